// A C++ app that runs a .slim model through the slimrt C API.
//   slimrt_example model.slim input.f32 d0 d1 ...   (input: raw little-endian float32)
// Prints each output's shape, then its values one per line.
#include <slimrt/slimrt.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <vector>

static int fail(const char* what) {
  std::fprintf(stderr, "%s: %s\n", what, slimrt_last_error());
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s model.slim input.f32 d0 [d1 ...]\n", argv[0]);
    return 2;
  }
  std::vector<int64_t> dims;
  int64_t numel = 1;
  for (int i = 3; i < argc; ++i) {
    dims.push_back(std::atoll(argv[i]));
    numel *= dims.back();
  }
  std::ifstream f(argv[2], std::ios::binary);
  std::vector<char> raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (raw.size() != static_cast<size_t>(numel) * sizeof(float)) {
    std::fprintf(stderr, "input file holds %zu bytes, shape needs %lld\n", raw.size(), (long long)(numel * 4));
    return 2;
  }

  slimrt_model_t* model = nullptr;
  if (slimrt_model_load(argv[1], &model) != SLIMRT_OK) return fail("load");
  slimrt_session_options_t opt;
  slimrt_session_options_init(&opt);
  opt.threads = 1;
  slimrt_session_t* session = nullptr;
  if (slimrt_session_create(model, &opt, &session) != SLIMRT_OK) return fail("session");

  slimrt_tensor_t input = {raw.data(), SLIMRT_F32, static_cast<int32_t>(dims.size()), dims.data()};
  int32_t n_out = 0;
  slimrt_model_num_outputs(model, &n_out);
  std::vector<slimrt_output_t> outs(n_out);
  if (slimrt_session_output_shapes(session, &input, 1, outs.data(), n_out) != SLIMRT_OK) return fail("shapes");
  std::vector<std::vector<float>> bufs(n_out);
  for (int32_t i = 0; i < n_out; ++i) {
    int64_t n = 1;
    for (int d = 0; d < outs[i].ndim; ++d) n *= outs[i].dims[d];
    bufs[i].resize(n);
    outs[i].data = bufs[i].data();
    outs[i].capacity = n * sizeof(float);
  }
  if (slimrt_session_run(session, &input, 1, outs.data(), n_out) != SLIMRT_OK) return fail("run");
  for (int32_t i = 0; i < n_out; ++i) {
    const char* name = nullptr;
    slimrt_model_output_info(model, i, &name, nullptr);
    std::printf("output %s shape", name);
    for (int d = 0; d < outs[i].ndim; ++d) std::printf(" %lld", (long long)outs[i].dims[d]);
    std::printf("\n");
    for (float v : bufs[i]) std::printf("%.9g\n", v);
  }
  slimrt_session_free(session);
  slimrt_model_free(model);
  return 0;
}
