// WidthScheduler: the latency-target width controller (rules in scheduler.h).
#include "runtime/scheduler.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/common.h"

namespace slimrt {

namespace {
[[noreturn]] void bad(const std::string& msg) { throw Error(Code::InvalidArgument, "WidthScheduler: " + msg); }
}  // namespace

double percentile_of(std::vector<double>& v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const double pos = p / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

WidthScheduler::WidthScheduler(std::vector<double> widths, double target_ms, double percentile,
                               SchedulerOptions options)
    : widths_(std::move(widths)), target_(target_ms), pct_(percentile), opt_(std::move(options)) {
  const int n = static_cast<int>(widths_.size());
  if (n == 0) bad("needs at least one width");
  for (int i = 0; i < n; ++i) {
    if (!(widths_[i] > 0) || !std::isfinite(widths_[i])) bad("widths must be positive");
    if (i && !(widths_[i] < widths_[i - 1])) bad("widths must be strictly descending (widest first)");
  }
  if (!(target_ms > 0) || !std::isfinite(target_ms)) bad("target_ms must be a positive number");
  if (!(percentile > 0 && percentile <= 100)) bad("percentile must be in (0, 100]");
  if (opt_.window < 1) bad("window must be >= 1");
  if (!(opt_.ewma_alpha > 0 && opt_.ewma_alpha <= 1)) bad("ewma_alpha must be in (0, 1]");
  if (!(opt_.headroom >= 0) || !std::isfinite(opt_.headroom)) bad("headroom must be >= 0");
  if (opt_.probe_interval < 0) bad("probe_interval must be >= 0 (0 = never probe)");
  if (opt_.floor_index < -1 || opt_.floor_index >= n)
    bad("floor index " + std::to_string(opt_.floor_index) + " is outside -1.." + std::to_string(n - 1));
  if (opt_.cooldown < 0) bad("cooldown must be >= 0");
  if (opt_.miss_runs < 1) bad("miss_runs must be >= 1");
  if (opt_.min_samples < 1) bad("min_samples must be >= 1");
  if (opt_.costs.empty()) {
    for (double w : widths_) costs_.push_back(w * w);
  } else {
    if (static_cast<int>(opt_.costs.size()) != n) bad("costs must hold one value per width");
    for (double c : opt_.costs)
      if (!(c > 0) || !std::isfinite(c)) bad("costs must be positive");
    costs_ = opt_.costs;
  }
  floor_ = opt_.floor_index < 0 ? n - 1 : opt_.floor_index;
  tracks_.resize(n);
  for (auto& t : tracks_) {
    t.ring.assign(opt_.window, 0.0);
    t.ring_seq.assign(opt_.window, 0);
  }
}

void WidthScheduler::push(Track& t, double v) {
  const int64_t w = opt_.window;
  t.ring[t.head % w] = v;
  t.ring_seq[t.head % w] = seq_;
  ++t.head;
  ++t.runs;
  if (v > target_) ++t.misses;
  t.ewma = t.has_ewma ? t.ewma + opt_.ewma_alpha * (v - t.ewma) : v;
  t.has_ewma = true;
  t.last = v;
}

std::vector<double> WidthScheduler::recent(const Track& t, int64_t n, int64_t* first_seq) const {
  const int64_t w = opt_.window;
  n = std::min({n, t.head, w});
  std::vector<double> out;
  out.reserve(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (int64_t i = t.head - n; i < t.head; ++i) out.push_back(t.ring[i % w]);
  if (first_seq) *first_seq = n > 0 ? t.ring_seq[(t.head - n) % w] : seq_ + 1;
  return out;
}

int WidthScheduler::choose() {
  std::lock_guard<std::mutex> lk(mu_);
  if (opt_.probe_interval > 0 && cur_ > 0 && since_switch_ >= opt_.cooldown &&
      since_probe_ >= opt_.probe_interval) {
    since_probe_ = 0;
    probe_out_ = cur_ - 1;
    ++probes_;
    return probe_out_;
  }
  return cur_;
}

void WidthScheduler::record(int idx, double latency_ms) {
  if (idx < 0 || idx >= static_cast<int>(widths_.size()))
    bad("width index " + std::to_string(idx) + " is outside 0.." + std::to_string(widths_.size() - 1));
  if (!(latency_ms >= 0) || !std::isfinite(latency_ms)) bad("latency must be a finite number >= 0");
  std::lock_guard<std::mutex> lk(mu_);
  ++seq_;
  Track& t = tracks_[idx];
  push(t, latency_ms);
  if (idx != cur_) {
    if (idx == probe_out_) {
      t.probes.emplace_back(seq_, latency_ms);
      if (static_cast<int>(t.probes.size()) > opt_.window) t.probes.erase(t.probes.begin());
      probe_out_ = -1;
    }
    return;
  }
  control(latency_ms);
}

void WidthScheduler::switch_to(int idx) {
  cur_ = idx;
  since_switch_ = 0;
  stable_runs_ = 0;
  consecutive_miss_ = 0;
  since_probe_ = 0;
  probe_out_ = -1;
  ++switches_;
}

void WidthScheduler::control(double latency_ms) {
  const Track& t = tracks_[cur_];
  ++since_switch_;
  ++since_probe_;
  if (latency_ms > target_) {
    ++consecutive_miss_;
    stable_runs_ = 0;
  } else {
    consecutive_miss_ = 0;
    ++stable_runs_;
  }

  // ---- step down at once when the current width misses
  if (cur_ < floor_) {
    const int64_t n = std::min<int64_t>(since_switch_, opt_.window);
    std::vector<double> fresh = recent(t, n);
    const double p = n >= opt_.min_samples ? percentile_of(fresh, pct_) : 0.0;
    if (consecutive_miss_ >= opt_.miss_runs || (n >= opt_.min_samples && p > target_)) {
      std::vector<double> last = recent(t, std::min<int64_t>(opt_.miss_runs, n));
      const double level = std::max(p, percentile_of(last, 50.0));
      int j = cur_ + 1;
      for (int k = cur_ + 1; k <= floor_; ++k) {
        j = k;
        if (level * costs_[k] / costs_[cur_] * (1.0 + opt_.headroom) <= target_) break;
      }
      switch_to(j);
      ++steps_down_;
      return;
    }
  }

  // ---- step up one width after a stable window with headroom
  if (cur_ > 0 && since_switch_ >= opt_.cooldown && stable_runs_ >= opt_.window) {
    int64_t first_seq = 0;
    std::vector<double> win = recent(t, opt_.window, &first_seq);
    double est = percentile_of(win, pct_) * costs_[cur_ - 1] / costs_[cur_];
    std::vector<double> probed;
    for (const auto& pr : tracks_[cur_ - 1].probes)
      if (pr.first >= first_seq) probed.push_back(pr.second);
    if (!probed.empty()) est = percentile_of(probed, pct_);
    if (est * (1.0 + opt_.headroom) < target_) {
      switch_to(cur_ - 1);
      ++steps_up_;
    }
  }
}

int WidthScheduler::current() const {
  std::lock_guard<std::mutex> lk(mu_);
  return cur_;
}

void WidthScheduler::set_target_ms(double target_ms) {
  if (!(target_ms > 0) || !std::isfinite(target_ms)) bad("target_ms must be a positive number");
  std::lock_guard<std::mutex> lk(mu_);
  target_ = target_ms;
}

double WidthScheduler::target_ms() const {
  std::lock_guard<std::mutex> lk(mu_);
  return target_;
}

void WidthScheduler::reset() {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& t : tracks_) {
    t = Track();
    t.ring.assign(opt_.window, 0.0);
    t.ring_seq.assign(opt_.window, 0);
  }
  cur_ = 0;
  seq_ = since_switch_ = stable_runs_ = consecutive_miss_ = since_probe_ = 0;
  probe_out_ = -1;
  switches_ = steps_down_ = steps_up_ = probes_ = 0;
}

SchedulerStats WidthScheduler::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  SchedulerStats s;
  s.current = cur_;
  s.target_ms = target_;
  s.percentile = pct_;
  s.runs = seq_;
  s.switches = switches_;
  s.steps_down = steps_down_;
  s.steps_up = steps_up_;
  s.probes = probes_;
  for (size_t i = 0; i < widths_.size(); ++i) {
    const Track& t = tracks_[i];
    WidthStats w;
    w.width = widths_[i];
    w.runs = t.runs;
    w.misses = t.misses;
    std::vector<double> win = recent(t, opt_.window);
    w.window_runs = static_cast<int64_t>(win.size());
    w.pct = percentile_of(win, pct_);
    w.p50 = percentile_of(win, 50.0);
    w.p95 = percentile_of(win, 95.0);
    w.ewma = t.ewma;
    w.last = t.last;
    s.widths.push_back(w);
  }
  return s;
}

}  // namespace slimrt
