// The op schema: the C++ mirror of python/slimrt/ir.py OPS (a test checks that
// the two are equal, via core.op_schema()). For each op: how many inputs it
// takes and each attribute's kind and default. The loader checks every node
// against it (known op, input count, known attributes of the right kind) and
// checks attribute legality (check_node_attrs).
#pragma once
#include <string>
#include <vector>

#include "format/model_def.h"
#include "kernels/act.h"

namespace slimrt {

struct AttrSpec {
  std::string name;
  AttrValue def;  // def.kind is the attribute's kind
};

struct OpSchema {
  std::string name;
  int min_inputs = 0, max_inputs = 0;
  int num_outputs = 1;  // every op in the IR has exactly one output
  std::vector<AttrSpec> attrs;
  const AttrSpec* find(const std::string& attr) const;  // nullptr when unknown
};

// All ops, in ir.OPS order.
const std::vector<OpSchema>& op_schemas();
// nullptr when `op` is unknown.
const OpSchema* find_op_schema(const std::string& op);

// Activation names in ir.ACTIVATIONS order; index == static_cast<int>(Act).
const std::vector<std::string>& activation_names();
// False when `name` is not an activation.
bool parse_activation(const std::string& name, Act* out);

const char* attr_kind_name(AttrValue::Kind k);  // "int", "float", "str", "ints", "floats"

// Checks the values of a node's attributes (kinds are already checked):
// strides/dilations/kernel of length 2 and >= 1, pads length 4 and >= 0 (pad
// op: even length, >= 0), groups >= 1, act an activation, flags 0/1, perm a
// permutation, reshape shape >= -1 with at most one -1, slice lists of equal
// length, epsilon finite >= 0, no NaN. Throws Error(Code::Format) prefixed
// with `where`.
void check_node_attrs(const NodeDef& node, const OpSchema& schema, const std::string& where);

}  // namespace slimrt
