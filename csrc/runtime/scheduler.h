// WidthScheduler: picks which width of a slimmable model to run so that a
// latency percentile stays under a target. Pure control logic: it has no
// clock; the caller times each run and reports it with record(). Switching
// widths costs nothing (it is an index into the model's width list).
//
// Indices: 0 is the widest width, widths.size()-1 the narrowest. "Step down"
// = run a narrower width (index + 1 or more), "step up" = one wider (index - 1).
//
// Control rules (every decision happens in record() for the current width):
//  * miss: a run slower than the target.
//  * step down at once when the last `miss_runs` runs at the current width
//    all missed, or when the percentile of the runs since the last switch
//    (once there are `min_samples` of them) misses. The step size is chosen
//    from the cost ratio: the widest narrower width whose predicted latency
//    level * cost[j] / cost[cur] fits target / (1 + headroom); at least one
//    step, never past the floor.
//  * step up (one step) only after a full window (`window` runs) at the
//    current width since the last switch or miss, at least `cooldown` runs
//    after a switch, and when the wider width's estimate * (1 + headroom) is
//    under the target. The estimate is the percentile of the wider width's
//    probe runs during that window if there were any (a measurement under
//    the present load), else the current percentile * the cost ratio.
//    With a fixed per-run overhead the cost-ratio prediction overestimates
//    the wider width's latency, so it errs on the side of staying.
//  * probing: every `probe_interval` runs at a narrower width (after the
//    cooldown), choose() returns the next wider width once, to refresh its
//    estimate. Runs recorded for a width that is not the current one (probes,
//    forced runs) update that width's statistics only.
// Under steady load inside the hysteresis band nothing changes, so there is
// no oscillation on noise. Thread-safe: every member locks one mutex.
#pragma once
#include <cstdint>
#include <mutex>
#include <vector>

namespace slimrt {

struct SchedulerOptions {
  int window = 32;           // runs per width kept for percentiles; also the stable window before a step up
  double ewma_alpha = 0.2;   // weight of the newest run in the per-width moving average
  double headroom = 0.15;    // step up only when the wider estimate * (1 + headroom) < target
  int probe_interval = 64;   // runs at a narrower width between two probes of the next wider one (0 = never)
  int floor_index = -1;      // the narrowest index ever chosen (-1 = the last width)
  int cooldown = 8;          // runs after a switch before a step up or probe may happen
  int miss_runs = 3;         // this many consecutive misses at the current width force a step down
  int min_samples = 8;       // runs since the switch before the window percentile may force a step down
  std::vector<double> costs; // relative cost per width (e.g. MACs); empty = width^2
};

struct WidthStats {
  double width = 0;
  int64_t runs = 0;          // every run recorded for this width
  int64_t misses = 0;        // runs slower than the target
  int64_t window_runs = 0;   // runs in the window (<= options.window)
  double p50 = 0, p95 = 0;   // over the window (0 when empty)
  double pct = 0;            // the scheduler's percentile over the window
  double ewma = 0;           // exponential moving average of all runs (0 before the first)
  double last = 0;           // the latest run
};

struct SchedulerStats {
  int current = 0;
  double target_ms = 0;
  double percentile = 0;
  int64_t runs = 0;          // all runs recorded
  int64_t switches = 0;      // changes of the current width
  int64_t steps_down = 0, steps_up = 0;
  int64_t probes = 0;        // probe runs handed out by choose()
  std::vector<WidthStats> widths;
};

// Linear-interpolation percentile of v (numpy's default method); v is reordered.
// Returns 0 for an empty vector. p in [0, 100].
double percentile_of(std::vector<double>& v, double p);

class WidthScheduler {
 public:
  // widths: strictly descending, each in (0, 1] not required but > 0.
  // Throws slimrt::Error(InvalidArgument) on bad arguments.
  WidthScheduler(std::vector<double> widths, double target_ms, double percentile = 95.0,
                 SchedulerOptions options = SchedulerOptions());

  int choose();                            // index of the width to run now
  void record(int idx, double latency_ms); // report a finished run of width idx
  int current() const;                     // the width index the controller holds
  SchedulerStats stats() const;

  void set_target_ms(double target_ms);    // new target; the history is kept
  double target_ms() const;
  void reset();                            // back to the widest width, history cleared

  const std::vector<double>& widths() const { return widths_; }
  const SchedulerOptions& options() const { return opt_; }
  double percentile() const { return pct_; }
  int floor_index() const { return floor_; }

 private:
  struct Track {
    std::vector<double> ring;  // last `window` latencies, ring buffer
    std::vector<int64_t> ring_seq;  // the run sequence number of each
    int64_t head = 0;          // total pushed
    std::vector<std::pair<int64_t, double>> probes;  // (sequence, latency) of recent probe runs
    int64_t runs = 0, misses = 0;
    double ewma = 0, last = 0;
    bool has_ewma = false;
  };
  void push(Track& t, double v);
  // The last `n` samples of a track (at most the window), oldest first; *first_seq
  // gets the sequence number of the oldest returned (seq_ + 1 when none).
  std::vector<double> recent(const Track& t, int64_t n, int64_t* first_seq = nullptr) const;
  void switch_to(int idx);
  void control(double latency_ms);

  std::vector<double> widths_;
  std::vector<double> costs_;
  double target_;
  double pct_;
  SchedulerOptions opt_;
  int floor_;

  mutable std::mutex mu_;
  std::vector<Track> tracks_;
  int cur_ = 0;
  int64_t seq_ = 0;            // runs recorded (all widths)
  int64_t since_switch_ = 0;   // runs at cur_ since it became current
  int64_t stable_runs_ = 0;    // runs at cur_ since the last switch or miss
  int64_t consecutive_miss_ = 0;
  int64_t since_probe_ = 0;    // runs at cur_ since the last probe was handed out
  int probe_out_ = -1;         // index of an outstanding probe, -1 none
  int64_t switches_ = 0, steps_down_ = 0, steps_up_ = 0, probes_ = 0;
};

}  // namespace slimrt
