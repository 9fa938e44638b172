#include "runtime/session.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>

namespace slimrt {
namespace {

// "logits@w75" -> 75; -1 when the name has no width suffix.
int width_percent(const std::string& name) {
  size_t at = name.rfind("@w");
  if (at == std::string::npos || at + 2 >= name.size() || name.size() - at > 6) return -1;
  int v = 0;
  for (size_t i = at + 2; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    v = v * 10 + (name[i] - '0');
  }
  return v >= 1 && v <= 100 ? v : -1;
}

}  // namespace

Session::Session(std::shared_ptr<const ModelDef> model, const ProgramOptions& opt, const WidthOptions& wopt)
    : prog_(std::make_shared<Program>(std::move(model), opt)) {
  const ModelDef& m = prog_->model();
  std::map<int, std::vector<int32_t>, std::greater<int>> by_width;
  bool all = !m.outputs.empty();
  for (int32_t v : m.outputs) {
    int p = width_percent(m.values[v].name);
    if (p < 0) { all = false; break; }
    by_width[p].push_back(v);
  }
  if (all && by_width.size() > 1) {
    size_t n = by_width.begin()->second.size();
    for (auto& [p, ids] : by_width) {
      if (ids.size() != n) throw Error(Code::Format, "width outputs @w" + std::to_string(p) + " do not match the widest");
      widths_.push_back(p / 100.0);
      sets_.push_back(prog_->add_output_set(ids));
    }
  }
  if (wopt.latency_target_ms > 0) {
    if (widths_.empty())
      throw Error(Code::InvalidArgument, "latency_target_ms needs a slimmable model (outputs named <out>@w<percent>)");
    SchedulerOptions so;
    if (wopt.min_width > 0) {
      int floor = 0;
      while (floor + 1 < static_cast<int>(widths_.size()) && widths_[floor + 1] >= wopt.min_width - 1e-9) ++floor;
      so.floor_index = floor;
    }
    sched_ = std::make_unique<WidthScheduler>(widths_, wopt.latency_target_ms, wopt.percentile, so);
  }
}

int Session::pick(double width) {
  if (widths_.empty()) {
    if (width > 0 && width < 1) throw Error(Code::InvalidArgument, "this model has no width variants");
    return -1;
  }
  if (width > 0) {
    int idx = static_cast<int>(widths_.size()) - 1;
    for (size_t i = 0; i < widths_.size(); ++i)
      if (widths_[i] >= width - 1e-9) idx = static_cast<int>(i);
    return idx;
  }
  return sched_ ? sched_->choose() : 0;
}

const std::vector<int32_t>& Session::outputs(int w) const { return prog_->output_set(w < 0 ? -1 : sets_[w]); }

std::shared_ptr<const Plan> Session::plan(const std::vector<TensorInfo>& inputs, int w) const {
  return prog_->plan(inputs, w < 0 ? -1 : sets_[w]);
}

void Session::execute(const Plan& plan, int w, const std::vector<const void*>& in, const std::vector<void*>& out,
                      int threads, std::vector<double>* node_ms) {
  auto t0 = std::chrono::steady_clock::now();
  prog_->execute(plan, in, out, threads, node_ms);
  if (sched_ && w >= 0 && !node_ms) {
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    sched_->record(w, ms);
  }
}

int Session::current_width_index() const { return sched_ ? sched_->current() : (widths_.empty() ? -1 : 0); }

}  // namespace slimrt
