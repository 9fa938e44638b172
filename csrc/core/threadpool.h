// A persistent worker pool shared by every session in the process.
// Several callers may run jobs at once (sessions used from several Python
// threads); each job is split into tasks claimed with an atomic counter, and
// the calling thread works on its own job too. Calls made from inside a task
// run serially, so nested parallelism never oversubscribes.
#pragma once
#include <cstdint>
#include <functional>

namespace slimrt {

class ThreadPool {
 public:
  static ThreadPool& global();
  // Calls fn(t) for every t in [0, ntasks), on at most `threads` threads
  // (the caller included). Blocks until all tasks finished. The first
  // exception thrown by a task is rethrown in the caller.
  void run(int64_t ntasks, int threads, const std::function<void(int64_t)>& fn);
  int max_threads() const;  // workers + the caller
  struct Impl;
 private:
  ThreadPool();
  Impl* impl_;
};

// Number of threads a session uses when the user does not say
// (SLIMRT_NUM_THREADS, else the number of CPUs the process may run on).
int default_threads();

// Splits [0, n) into chunks of at least `grain` items, at most `threads`
// chunks, and runs fn(begin, end) for each chunk in parallel.
void parallel_for(int64_t n, int threads, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn);

}  // namespace slimrt
