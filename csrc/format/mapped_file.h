// Read-only bytes of a model: a private read-only mmap of a file, or a
// 64-byte aligned heap copy of a caller's buffer. Either way data() is at
// least 64-byte aligned, so buffers at 64-aligned file offsets are aligned
// in memory too. The runtime keeps one alive as long as it uses tensor bytes
// (ModelDef::file).
//
// Caveat of any mmap: if another process truncates the file while it is
// mapped, touching the lost pages raises SIGBUS. Files are written atomically
// (temp file + rename) by slimrt, which never truncates a published file.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace slimrt {

class MappedFile {
 public:
  // Maps `path` read-only. Throws Error(Code::Io) when it cannot be opened,
  // is not a regular file, or cannot be mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  // Copies `size` bytes into an aligned heap buffer.
  static std::shared_ptr<MappedFile> copy_of(const void* data, size_t size);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }  // "" for a heap copy
  bool is_mapped() const { return mapped_; }
  // A mapping: drops the pages read so far from this process's resident set (MADV_DONTNEED). The
  // bytes stay valid: the next read of a page faults it in from the file again, as after the kernel
  // evicted it. For a runtime that has packed what it needs: the file's copy of the weights then stops
  // counting twice. A heap copy: nothing.
  void release_pages() const;
  // The same for the whole pages inside [p, p + n) (a tensor's bytes); nothing outside the mapping.
  void release_range(const void* p, size_t n) const;

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  std::string path_;
};

}  // namespace slimrt
