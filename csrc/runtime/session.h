// A Session: a Program plus, for slimmable models, the width variants and the
// latency-target WidthScheduler. Shared by the Python binding and the C API.
//
// Widths come from the graph outputs: a slimmable model (python/slimrt/slimmable.py)
// names every output `<name>@w<percent>`; outputs with the same suffix form one
// width's output set. A model without such outputs has no widths and runs all outputs.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "runtime/program.h"
#include "runtime/scheduler.h"

namespace slimrt {

struct WidthOptions {
  double latency_target_ms = 0;  // > 0: the scheduler picks the width run by run
  double percentile = 95;
  double min_width = 0;          // accuracy floor: never run a narrower width
};

class Session {
 public:
  Session(std::shared_ptr<const ModelDef> model, const ProgramOptions& opt, const WidthOptions& wopt = {});

  Program& program() { return *prog_; }
  const Program& program() const { return *prog_; }
  const std::vector<double>& widths() const { return widths_; }  // descending; empty if not slimmable
  bool has_scheduler() const { return sched_ != nullptr; }
  WidthScheduler* scheduler() { return sched_.get(); }

  // Which width a run uses: `width` > 0 forces the nearest width >= it (else the narrowest);
  // otherwise the scheduler decides, or the widest. Returns -1 for a model without widths.
  int pick(double width);
  // Output value ids of width index w (-1: all graph outputs).
  const std::vector<int32_t>& outputs(int w) const;
  std::shared_ptr<const Plan> plan(const std::vector<TensorInfo>& inputs, int w) const;
  // Runs and, with a scheduler, records the measured latency for width w (not when profiling:
  // node_ms as in Program::execute).
  void execute(const Plan& plan, int w, const std::vector<const void*>& in, const std::vector<void*>& out,
               int threads = 0, std::vector<double>* node_ms = nullptr);
  int current_width_index() const;

 private:
  std::shared_ptr<Program> prog_;
  std::vector<double> widths_;
  std::vector<int> sets_;  // output set per width
  std::unique_ptr<WidthScheduler> sched_;
};

}  // namespace slimrt
