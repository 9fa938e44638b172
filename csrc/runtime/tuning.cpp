#include "runtime/tuning.h"

namespace slimrt {

std::string cpu_signature(Isa isa, int threads) {
  const CpuInfo& c = cpu_info();
  std::string s = c.vendor + "/" + (c.brand.empty() ? "unknown" : c.brand) + "/" + isa_name(isa) + "/t" +
                  std::to_string(threads);
  for (char& ch : s)
    if (ch == '\t' || ch == '\n' || ch == '\r') ch = ' ';
  return s;
}

std::string tuning_key(const std::string& node, const std::vector<std::vector<int64_t>>& input_shapes) {
  std::string k = node + "|";
  for (size_t i = 0; i < input_shapes.size(); ++i) {
    if (i) k += ",";
    for (size_t d = 0; d < input_shapes[i].size(); ++d) k += (d ? "x" : "") + std::to_string(input_shapes[i][d]);
  }
  return k;
}

std::map<std::string, std::string> parse_tuning(const std::string& text) {
  std::map<std::string, std::string> r;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    const size_t tab = line.find('\t');
    if (tab != std::string::npos && tab > 0 && tab + 1 < line.size()) r[line.substr(0, tab)] = line.substr(tab + 1);
    pos = end + 1;
  }
  return r;
}

std::string format_tuning(const std::map<std::string, std::string>& records) {
  std::string s;
  for (auto& [k, v] : records) {
    if (k.find_first_of("\t\n") != std::string::npos || v.find_first_of("\t\n") != std::string::npos) continue;
    s += k + "\t" + v + "\n";
  }
  return s;
}

}  // namespace slimrt
