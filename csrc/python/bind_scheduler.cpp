// slimrt._core.WidthScheduler: the latency-target width controller (runtime/scheduler.h),
// exposed for tests and for Python-side serving loops. Glue only.
#include <optional>
#include <vector>

#include "python/bind.h"
#include "runtime/scheduler.h"

namespace slimrt::py {
// The scheduler's statistics as a dict: WidthScheduler.stats() and Session.stats() (declared in bind.h).
pyb::dict scheduler_stats_dict(const SchedulerStats& s) {
  pyb::list widths;
  for (const WidthStats& w : s.widths) {
    pyb::dict d;
    d["width"] = w.width;
    d["runs"] = w.runs;
    d["misses"] = w.misses;
    d["window_runs"] = w.window_runs;
    d["p50"] = w.p50;
    d["p95"] = w.p95;
    d["pct"] = w.pct;
    d["ewma"] = w.ewma;
    d["last"] = w.last;
    widths.append(d);
  }
  pyb::dict d;
  d["current"] = s.current;
  d["width"] = s.widths.empty() ? 0.0 : s.widths[s.current].width;
  d["target_ms"] = s.target_ms;
  d["percentile"] = s.percentile;
  d["runs"] = s.runs;
  d["switches"] = s.switches;
  d["steps_down"] = s.steps_down;
  d["steps_up"] = s.steps_up;
  d["probes"] = s.probes;
  d["widths"] = widths;
  return d;
}

}  // namespace slimrt::py

SLIMRT_PY_BIND(scheduler) {
  namespace pyb = pybind11;
  using slimrt::SchedulerOptions;
  using slimrt::WidthScheduler;
  pyb::class_<WidthScheduler>(m, "WidthScheduler", R"doc(
Latency-target width controller for slimmable models (no clock inside: time each run yourself).

WidthScheduler(widths, target_ms, percentile=95, *, window=32, ewma_alpha=0.2, headroom=0.15,
               probe_interval=64, floor=None, cooldown=8, miss_runs=3, min_samples=8, costs=None)

widths: strictly descending (index 0 = widest). floor: the narrowest index ever chosen (None = the
last). costs: relative cost per width (e.g. MACs), default width**2. choose() -> index to run;
record(index, latency_ms) after the run; stats() -> dict with per-width runs, p50, p95, ewma.)doc")
      .def(pyb::init([](std::vector<double> widths, double target_ms, double percentile, int window, double ewma_alpha,
                        double headroom, int probe_interval, std::optional<int> floor, int cooldown, int miss_runs,
                        int min_samples, std::optional<std::vector<double>> costs) {
             SchedulerOptions o;
             o.window = window;
             o.ewma_alpha = ewma_alpha;
             o.headroom = headroom;
             o.probe_interval = probe_interval;
             o.floor_index = floor ? *floor : -1;
             if (floor && *floor < 0) o.floor_index = -2;  // negative floors are rejected by the constructor
             o.cooldown = cooldown;
             o.miss_runs = miss_runs;
             o.min_samples = min_samples;
             if (costs) o.costs = *costs;
             return new WidthScheduler(std::move(widths), target_ms, percentile, std::move(o));
           }),
           pyb::arg("widths"), pyb::arg("target_ms"), pyb::arg("percentile") = 95.0, pyb::kw_only(),
           pyb::arg("window") = 32, pyb::arg("ewma_alpha") = 0.2, pyb::arg("headroom") = 0.15,
           pyb::arg("probe_interval") = 64, pyb::arg("floor") = pyb::none(), pyb::arg("cooldown") = 8,
           pyb::arg("miss_runs") = 3, pyb::arg("min_samples") = 8, pyb::arg("costs") = pyb::none())
      .def("choose", &WidthScheduler::choose, "Index of the width to run now (occasionally a probe of a wider one).")
      .def("record", &WidthScheduler::record, pyb::arg("index"), pyb::arg("latency_ms"),
           "Reports the latency of a finished run of width `index`.")
      .def("stats", [](const WidthScheduler& s) { return slimrt::py::scheduler_stats_dict(s.stats()); })
      .def("reset", &WidthScheduler::reset, "Back to the widest width with the history cleared.")
      .def_property_readonly("current", &WidthScheduler::current)
      .def_property_readonly("width", [](const WidthScheduler& s) { return s.widths()[s.current()]; })
      .def_property_readonly("widths", [](const WidthScheduler& s) { return s.widths(); })
      .def_property_readonly("percentile", &WidthScheduler::percentile)
      .def_property_readonly("floor", &WidthScheduler::floor_index)
      .def_property("target_ms", &WidthScheduler::target_ms, &WidthScheduler::set_target_ms)
      .def("__repr__", [](const WidthScheduler& s) {
        return "WidthScheduler(current=" + std::to_string(s.current()) + ", target_ms=" +
               std::to_string(s.target_ms()) + ")";
      });
}
