// MappedFile: mmap (POSIX) or an aligned heap copy.
#include "format/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/common.h"

namespace slimrt {

namespace {
std::string errno_text(int e) { return std::strerror(e); }

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};
}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) fail(Code::Io, "cannot open '" + path + "': " + errno_text(errno));
  struct stat st;
  if (::fstat(f.fd, &st) != 0) fail(Code::Io, "cannot stat '" + path + "': " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) fail(Code::Io, "'" + path + "' is not a regular file");
  std::shared_ptr<MappedFile> m(new MappedFile());
  m->path_ = path;
  m->size_ = static_cast<size_t>(st.st_size);
  if (m->size_ == 0) return m;  // nothing to map; the loader reports the file as too small
  void* p = ::mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, f.fd, 0);
  if (p == MAP_FAILED) fail(Code::Io, "cannot map '" + path + "': " + errno_text(errno));
  m->data_ = static_cast<const uint8_t*>(p);
  m->mapped_ = true;
  // The loader reads every byte once (CRCs); tell the kernel to read ahead.
  ::madvise(p, m->size_, MADV_WILLNEED);
  return m;
}

std::shared_ptr<MappedFile> MappedFile::copy_of(const void* data, size_t size) {
  std::shared_ptr<MappedFile> m(new MappedFile());
  m->size_ = size;
  if (size == 0) return m;
  uint8_t* p = static_cast<uint8_t*>(aligned_alloc_bytes(size));
  std::memcpy(p, data, size);
  m->data_ = p;
  return m;
}

void MappedFile::release_pages() const {
  if (mapped_ && data_) ::madvise(const_cast<uint8_t*>(data_), size_, MADV_DONTNEED);
}

void MappedFile::release_range(const void* p, size_t n) const {
  if (!mapped_ || !data_ || !p || n == 0) return;
  const auto begin = reinterpret_cast<uintptr_t>(data_), end = begin + size_;
  auto lo = reinterpret_cast<uintptr_t>(p), hi = lo + n;
  if (lo < begin || hi > end || hi < lo) return;
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  lo = (lo + page - 1) / page * page;
  hi = hi / page * page;
  if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

MappedFile::~MappedFile() {
  if (!data_) return;
  if (mapped_)
    ::munmap(const_cast<uint8_t*>(data_), size_);
  else
    std::free(const_cast<uint8_t*>(data_));
}

}  // namespace slimrt
