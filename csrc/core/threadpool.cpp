#include "core/threadpool.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace slimrt {
namespace {

thread_local bool tl_in_task = false;

struct Job {
  const std::function<void(int64_t)>* fn;
  int64_t ntasks;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::atomic<int> helpers_wanted{0};
  std::mutex m;
  std::condition_variable cv;
  std::exception_ptr error;

  // Claims and runs tasks until none are left.
  void work() {
    bool saved = tl_in_task;
    tl_in_task = true;
    int64_t finished = 0;
    for (;;) {
      int64_t t = next.fetch_add(1, std::memory_order_relaxed);
      if (t >= ntasks) break;
      try {
        (*fn)(t);
      } catch (...) {
        std::lock_guard<std::mutex> lk(m);
        if (!error) error = std::current_exception();
      }
      ++finished;
    }
    tl_in_task = saved;
    if (finished && done.fetch_add(finished, std::memory_order_acq_rel) + finished == ntasks) {
      std::lock_guard<std::mutex> lk(m);
      cv.notify_all();
    }
  }
};

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (*end || x < 1 || x > 1024) return fallback;
  return static_cast<int>(x);
}

int cpus_available() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}

}  // namespace

struct ThreadPool::Impl {
  std::mutex m;
  std::condition_variable cv;
  std::deque<std::shared_ptr<Job>> queue;
  std::vector<std::thread> workers;
  bool stop = false;

  std::atomic<int> queued{0};  // jobs in the queue (read without the lock while spinning)

  void loop() {
    bool just_worked = false;
    for (;;) {
      // After a job, spin briefly for the next one (an inference runs many short parallel
      // ops back to back) instead of paying a futex wake-up per op; then sleep.
      if (just_worked) {
        auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
        while (queued.load(std::memory_order_relaxed) == 0 && std::chrono::steady_clock::now() < until)
          __builtin_ia32_pause();
      }
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lk(m);
        cv.wait(lk, [&] { return stop || !queue.empty(); });
        if (stop) return;
        job = queue.front();
        if (job->helpers_wanted.fetch_sub(1) <= 1) {
          queue.pop_front();
          queued.fetch_sub(1, std::memory_order_relaxed);
        }
      }
      job->work();
      just_worked = true;
    }
  }
};

ThreadPool::ThreadPool() : impl_(new Impl) {
  int n = std::max(1, std::max(cpus_available(), env_int("SLIMRT_NUM_THREADS", 1))) - 1;
  for (int i = 0; i < n; ++i) impl_->workers.emplace_back([this] { impl_->loop(); });
  for (auto& w : impl_->workers) w.detach();  // the pool lives as long as the process
}

ThreadPool& ThreadPool::global() {
  static ThreadPool* pool = new ThreadPool();  // never destroyed: workers are detached
  return *pool;
}

int ThreadPool::max_threads() const { return static_cast<int>(impl_->workers.size()) + 1; }

void ThreadPool::run(int64_t ntasks, int threads, const std::function<void(int64_t)>& fn) {
  if (ntasks <= 0) return;
  threads = std::min<int64_t>(std::min(threads, max_threads()), ntasks);
  if (threads <= 1 || tl_in_task) {
    bool saved = tl_in_task;
    tl_in_task = true;
    try {
      for (int64_t t = 0; t < ntasks; ++t) fn(t);
    } catch (...) {
      tl_in_task = saved;
      throw;
    }
    tl_in_task = saved;
    return;
  }
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->ntasks = ntasks;
  job->helpers_wanted = threads - 1;
  {
    std::lock_guard<std::mutex> lk(impl_->m);
    impl_->queue.push_back(job);
    impl_->queued.fetch_add(1, std::memory_order_relaxed);
  }
  if (threads - 1 == 1) impl_->cv.notify_one(); else impl_->cv.notify_all();
  job->work();
  {
    // The helpers usually finish within microseconds of the caller: spin briefly before
    // sleeping, since a futex wake-up costs tens of microseconds on a VM.
    auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
    while (job->done.load(std::memory_order_acquire) != ntasks && std::chrono::steady_clock::now() < until)
      __builtin_ia32_pause();
    std::unique_lock<std::mutex> lk(job->m);
    job->cv.wait(lk, [&] { return job->done.load(std::memory_order_acquire) == ntasks; });
  }
  {
    // Helpers that never came must not find the job later.
    std::lock_guard<std::mutex> lk(impl_->m);
    for (auto it = impl_->queue.begin(); it != impl_->queue.end(); ++it) {
      if (*it == job) {
        impl_->queue.erase(it);
        impl_->queued.fetch_sub(1, std::memory_order_relaxed);
        break;
      }
    }
  }
  if (job->error) std::rethrow_exception(job->error);
}

int default_threads() {
  return env_int("SLIMRT_NUM_THREADS", cpus_available());
}

void parallel_for(int64_t n, int threads, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int64_t chunks = std::min<int64_t>(threads, (n + grain - 1) / grain);
  if (chunks <= 1) { fn(0, n); return; }
  int64_t step = (n + chunks - 1) / chunks;
  ThreadPool::global().run(chunks, static_cast<int>(chunks), [&](int64_t c) {
    int64_t b = c * step, e = std::min(n, b + step);
    if (b < e) fn(b, e);
  });
}

}  // namespace slimrt
