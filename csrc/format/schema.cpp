// Op schema table (mirror of ir.OPS) and attribute legality rules.
#include "format/schema.h"

#include "kernels/gemm/sgemm.h"

#include <cmath>
#include <unordered_map>

#include "core/common.h"

namespace slimrt {
namespace {

AttrSpec I(const char* n, int64_t d) {
  AttrSpec a{n, {}};
  a.def.kind = AttrValue::Int;
  a.def.i = d;
  return a;
}
AttrSpec F(const char* n, double d) {
  AttrSpec a{n, {}};
  a.def.kind = AttrValue::Float;
  a.def.f = d;
  return a;
}
AttrSpec S(const char* n, const char* d) {
  AttrSpec a{n, {}};
  a.def.kind = AttrValue::Str;
  a.def.s = d;
  return a;
}
AttrSpec Is(const char* n, std::vector<int64_t> d) {
  AttrSpec a{n, {}};
  a.def.kind = AttrValue::Ints;
  a.def.ints = std::move(d);
  return a;
}

std::vector<OpSchema> build() {
  auto act = [](std::vector<AttrSpec> v) {
    v.push_back(S("act", "none"));
    v.push_back(F("alpha", 0.0));
    return v;
  };
  const std::vector<AttrSpec> pool = {Is("kernel", {2, 2}), Is("strides", {2, 2}), Is("pads", {0, 0, 0, 0}),
                                      I("ceil_mode", 0)};
  auto avg = pool;
  // qdense / qconv2d: input, output (out_scale 0 = float output) and u8-residual parameters
  auto qlayer = [](std::vector<AttrSpec> v) {
    for (AttrSpec a : {F("x_scale", 1.0), I("x_zero", 0), F("out_scale", 0.0), I("out_zero", 0), I("residual", 0),
                       F("res_scale", 1.0), I("res_zero", 0)})
      v.push_back(a);
    return v;
  };
  avg.push_back(I("count_include_pad", 1));
  return {
      {"dense", 2, 4, 1, act({I("residual", 0)})},
      {"matmul", 2, 2, 1, act({I("trans_b", 0)})},
      {"conv2d", 2, 4, 1,
       act({Is("strides", {1, 1}), Is("dilations", {1, 1}), Is("pads", {0, 0, 0, 0}), I("groups", 1), Is("kernel", {}),
            I("residual", 0)})},
      {"batch_norm", 5, 5, 1, {F("epsilon", 1e-3)}},
      {"activation", 1, 1, 1, act({})},
      {"prelu", 2, 2, 1, {}},
      {"softmax", 1, 1, 1, {I("axis", -1)}},
      {"max_pool", 1, 1, 1, pool},
      {"avg_pool", 1, 1, 1, avg},
      {"global_avg_pool", 1, 1, 1, {I("keepdims", 0)}},
      {"global_max_pool", 1, 1, 1, {I("keepdims", 0)}},
      {"reduce_mean", 1, 1, 1, {Is("axes", {-1}), I("keepdims", 0)}},
      {"reduce_max", 1, 1, 1, {Is("axes", {-1}), I("keepdims", 0)}},
      {"flatten", 1, 1, 1, {I("axis", 1)}},
      {"reshape", 1, 1, 1, {Is("shape", {-1})}},
      {"transpose", 1, 1, 1, {Is("perm", {})}},
      {"add", 2, 2, 1, {}},
      {"sub", 2, 2, 1, {}},
      {"mul", 2, 2, 1, {}},
      {"div", 2, 2, 1, {}},
      {"concat", 1, 64, 1, {I("axis", -1)}},
      {"pad", 1, 1, 1, {Is("pads", {}), F("value", 0.0)}},
      {"layer_norm", 2, 3, 1, {F("epsilon", 1e-5)}},
      {"embedding", 2, 2, 1, {}},
      {"slice", 1, 1, 1, {Is("axes", {}), Is("starts", {}), Is("ends", {})}},
      // static int8 activation chains (ops/quant_ops.cpp): u8 values x ~ scale * (q - zero)
      {"quantize", 1, 1, 1, {F("scale", 1.0), I("zero_point", 0)}},
      {"dequantize", 1, 1, 1, {F("scale", 1.0), I("zero_point", 0)}},
      {"qdense", 2, 4, 1, act(qlayer({}))},
      {"qconv2d", 2, 4, 1,
       act(qlayer({Is("strides", {1, 1}), Is("dilations", {1, 1}), Is("pads", {0, 0, 0, 0}), I("groups", 1)}))},
      {"qmax_pool", 1, 1, 1, pool},
      {"qglobal_avg_pool", 1, 1, 1, {F("x_scale", 1.0), I("x_zero", 0), F("out_scale", 0.0), I("out_zero", 0),
                                      I("keepdims", 0)}},
      {"qadd", 2, 2, 1, act({F("a_scale", 1.0), I("a_zero", 0), F("b_scale", 1.0), I("b_zero", 0),
                             F("out_scale", 0.0), I("out_zero", 0)})},
      {"qactivation", 1, 1, 1, act({F("x_scale", 1.0), I("x_zero", 0), F("out_scale", 1.0), I("out_zero", 0)})},
      {"reshape_dims", 2, 9, 1, {Is("dims", {}), Is("refs", {})}},
      {"slice_like", 2, 2, 1, {Is("axes", {}), Is("starts", {}), Is("ref_axes", {})}},
      {"scaled_masked_softmax", 1, 2, 1, {F("scale", 1.0)}},
      {"attention", 3, 4, 1, {I("heads", 1), F("scale", 1.0), I("int8", 0)}},
  };
}

const std::unordered_map<std::string, const OpSchema*>& index() {
  static const std::unordered_map<std::string, const OpSchema*> idx = [] {
    std::unordered_map<std::string, const OpSchema*> m;
    for (const OpSchema& s : op_schemas()) m[s.name] = &s;
    return m;
  }();
  return idx;
}

std::string list_str(const std::vector<int64_t>& v) {
  std::string r = "[";
  for (size_t i = 0; i < v.size() && i < 16; ++i) r += (i ? ", " : "") + std::to_string(v[i]);
  if (v.size() > 16) r += ", ...";
  return r + "]";
}

}  // namespace

const AttrSpec* OpSchema::find(const std::string& attr) const {
  for (const AttrSpec& a : attrs)
    if (a.name == attr) return &a;
  return nullptr;
}

const std::vector<OpSchema>& op_schemas() {
  static const std::vector<OpSchema> s = build();
  return s;
}

const OpSchema* find_op_schema(const std::string& op) {
  auto it = index().find(op);
  return it == index().end() ? nullptr : it->second;
}

// One table of activation names: kernels::act_name / parse_act (kernels/gemm/act.cpp).
const std::vector<std::string>& activation_names() {
  static const std::vector<std::string> n = [] {
    std::vector<std::string> v;
    for (int i = 0; i < kNumActs; ++i) v.push_back(kernels::act_name(static_cast<Act>(i)));
    return v;
  }();
  return n;
}

bool parse_activation(const std::string& name, Act* out) { return kernels::parse_act(name.c_str(), out); }

const char* attr_kind_name(AttrValue::Kind k) {
  switch (k) {
    case AttrValue::Int: return "int";
    case AttrValue::Float: return "float";
    case AttrValue::Str: return "str";
    case AttrValue::Ints: return "ints";
    case AttrValue::Floats: return "floats";
  }
  return "?";
}

void check_node_attrs(const NodeDef& node, const OpSchema& schema, const std::string& where) {
  auto bad = [&](const std::string& key, const std::string& why) {
    format_error(where + ": attribute '" + key + "' " + why);
  };
  for (const auto& [key, v] : node.attrs) {
    if (v.kind == AttrValue::Float && std::isnan(v.f)) bad(key, "is NaN");
    if (v.kind == AttrValue::Floats)
      for (double f : v.floats)
        if (std::isnan(f)) bad(key, "holds NaN");
    if (key == "strides" || key == "dilations" || key == "kernel") {
      if (v.ints.size() != 2) bad(key, "must have 2 values, got " + list_str(v.ints));
      for (int64_t x : v.ints)
        if (x < 1) bad(key, "must be >= 1, got " + list_str(v.ints));
    } else if (key == "pads") {
      if (schema.name == "pad") {
        if (v.ints.size() % 2) bad(key, "must have an even length (begins, ends), got " + list_str(v.ints));
      } else if (v.ints.size() != 4) {
        bad(key, "must have 4 values [top, left, bottom, right], got " + list_str(v.ints));
      }
      for (int64_t x : v.ints)
        if (x < 0) bad(key, "must be >= 0, got " + list_str(v.ints));
    } else if (key == "scale" || key == "x_scale" || key == "res_scale" || key == "a_scale" || key == "b_scale" ||
               key == "out_scale") {
      // quantization scales (quantize / dequantize / q* ops); out_scale 0 means a float output
      bool zero_ok = key == "out_scale" && schema.name != "qactivation";
      if (v.kind == AttrValue::Float && (!std::isfinite(v.f) || v.f < 0 || (v.f == 0 && !zero_ok)))
        bad(key, std::string("must be ") + (zero_ok ? ">= 0" : "> 0") + " and finite, got " + std::to_string(v.f));
    } else if (key == "zero_point" || key == "x_zero" || key == "res_zero" || key == "a_zero" || key == "b_zero" ||
               key == "out_zero") {
      if (v.i < 0 || v.i > 255) bad(key, "must be a uint8 zero point in [0, 255], got " + std::to_string(v.i));
    } else if (key == "groups") {
      if (v.i < 1) bad(key, "must be >= 1, got " + std::to_string(v.i));
    } else if (key == "act") {
      Act a;
      if (!parse_activation(v.s, &a)) bad(key, "names unknown activation '" + v.s + "'");
    } else if (key == "alpha") {
      if (!std::isfinite(v.f)) bad(key, "must be finite");
    } else if (key == "epsilon") {
      if (!std::isfinite(v.f) || v.f < 0) bad(key, "must be finite and >= 0, got " + std::to_string(v.f));
    } else if (key == "ceil_mode" || key == "count_include_pad" || key == "keepdims" || key == "trans_b" ||
               key == "residual") {
      if (v.i != 0 && v.i != 1) bad(key, "must be 0 or 1, got " + std::to_string(v.i));
    } else if (key == "perm") {
      std::vector<char> seen(v.ints.size(), 0);
      for (int64_t x : v.ints) {
        if (x < 0 || x >= static_cast<int64_t>(v.ints.size()) || seen[x])
          bad(key, "is not a permutation: " + list_str(v.ints));
        seen[x] = 1;
      }
    } else if (key == "shape") {
      int inferred = 0;
      for (int64_t x : v.ints) {
        if (x < -1) bad(key, "has a dimension < -1: " + list_str(v.ints));
        inferred += x == -1;
      }
      if (inferred > 1) bad(key, "has more than one -1: " + list_str(v.ints));
    }
  }
  if (schema.name == "slice") {
    size_t na = node.attr_ints("axes").size(), ns = node.attr_ints("starts").size(),
           ne = node.attr_ints("ends").size();
    if (na != ns || na != ne)
      format_error(where + ": attributes 'axes', 'starts', 'ends' must have equal lengths, got " +
                   std::to_string(na) + ", " + std::to_string(ns) + ", " + std::to_string(ne));
  }
}

}  // namespace slimrt
