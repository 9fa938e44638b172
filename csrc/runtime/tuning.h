// Persisted kernel choices ("tuning records"), keyed by the CPU they were measured on.
//
// A tuned plan picks, per node and input shapes, the fastest of the op's kernel
// variants (Program::tune_node). The choices can be stored in the model file's
// metadata under `tuning/<cpu signature>` (see `slimrt tune`), so a later load on
// the same kind of CPU, ISA and thread count reuses them without timing anything.
//
// Record text: one line per choice, `<node name>|<input shapes>\t<variant name>\n`,
// input shapes as in tuning_key (e.g. `fc1|1x784`). Lines that do not parse are
// ignored (the metadata is untrusted, but only ever compared with names).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/cpu.h"

namespace slimrt {

// vendor / brand / ISA / threads: choices measured under one signature are reused only under it.
std::string cpu_signature(Isa isa, int threads);
inline std::string tuning_metadata_key(const std::string& signature) { return "tuning/" + signature; }

std::string tuning_key(const std::string& node, const std::vector<std::vector<int64_t>>& input_shapes);
std::map<std::string, std::string> parse_tuning(const std::string& text);
std::string format_tuning(const std::map<std::string, std::string>& records);

}  // namespace slimrt
