/* slimrt C API.
 *
 * Opaque handles, a status code on every call, a thread-local message for the
 * last error (slimrt_last_error), no C++ exceptions across the boundary.
 * A model is loaded (memory-mapped and fully validated) once; any number of
 * sessions may be created on it; one session may be run from several threads
 * at once. Inputs and outputs are caller-provided, C-contiguous buffers.
 */
#ifndef SLIMRT_SLIMRT_H_
#define SLIMRT_SLIMRT_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define SLIMRT_API __declspec(dllexport)
#else
#define SLIMRT_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum slimrt_status {
  SLIMRT_OK = 0,
  SLIMRT_ERR_INVALID_ARGUMENT = 1, /* bad argument, input shape or dtype */
  SLIMRT_ERR_FORMAT = 2,           /* malformed or corrupt .slim file */
  SLIMRT_ERR_UNSUPPORTED = 3,      /* op, format or ISA not available */
  SLIMRT_ERR_IO = 4,               /* file cannot be opened or mapped */
  SLIMRT_ERR_OUT_OF_MEMORY = 5,
  SLIMRT_ERR_INTERNAL = 6
} slimrt_status_t;

typedef enum slimrt_dtype {
  SLIMRT_F32 = 1, SLIMRT_F16 = 2, SLIMRT_I8 = 3, SLIMRT_U8 = 4,
  SLIMRT_I16 = 5, SLIMRT_U16 = 6, SLIMRT_I32 = 7, SLIMRT_I64 = 8
} slimrt_dtype_t;

#define SLIMRT_MAX_DIMS 8

typedef struct slimrt_model slimrt_model_t;
typedef struct slimrt_session slimrt_session_t;

typedef struct slimrt_session_options {
  int32_t threads;     /* 0 = SLIMRT_NUM_THREADS or the CPUs available */
  const char* isa;     /* NULL = best available; "scalar", "avx2", "avx512", "avx512vnni", "amx" */
  /* Slimmable models (outputs named <out>@w<percent>): */
  double latency_target_ms; /* > 0: the width scheduler picks each run's width to hold this target */
  double percentile;        /* of the latency the target applies to (0 = 95) */
  double min_width;         /* never run a narrower width (0 = no floor) */
  int32_t tune;             /* 1: time each compressed layer against its fp32 decoding per input shape, keep the faster */
  int32_t reserved[8];      /* zero */
} slimrt_session_options_t;

/* An input: caller-owned, C-contiguous. */
typedef struct slimrt_tensor {
  const void* data;
  slimrt_dtype_t dtype;
  int32_t ndim;
  const int64_t* dims;
} slimrt_tensor_t;

/* An output: data/capacity set by the caller; dtype, ndim, dims filled by slimrt. */
typedef struct slimrt_output {
  void* data;
  size_t capacity;     /* bytes available at data */
  slimrt_dtype_t dtype;
  int32_t ndim;
  int64_t dims[SLIMRT_MAX_DIMS];
} slimrt_output_t;

SLIMRT_API const char* slimrt_version(void);
/* Message of the last failed call on this thread ("" if none). Valid until the next call on this thread. */
SLIMRT_API const char* slimrt_last_error(void);
/* The ISA the dispatcher chose for this CPU (after the SLIMRT_ISA cap). */
SLIMRT_API const char* slimrt_cpu_isa(void);

SLIMRT_API slimrt_status_t slimrt_model_load(const char* path, slimrt_model_t** out);
SLIMRT_API slimrt_status_t slimrt_model_load_memory(const void* data, size_t size, slimrt_model_t** out);
SLIMRT_API void slimrt_model_free(slimrt_model_t* model);
SLIMRT_API slimrt_status_t slimrt_model_num_inputs(const slimrt_model_t* model, int32_t* n);
SLIMRT_API slimrt_status_t slimrt_model_num_outputs(const slimrt_model_t* model, int32_t* n);
/* dims has *ndim entries, -1 for a dynamic dimension (the batch). Pointers live as long as the model. */
SLIMRT_API slimrt_status_t slimrt_model_input_info(const slimrt_model_t* model, int32_t index, const char** name,
                                                   slimrt_dtype_t* dtype, int32_t* ndim, const int64_t** dims);
SLIMRT_API slimrt_status_t slimrt_model_output_info(const slimrt_model_t* model, int32_t index, const char** name,
                                                    slimrt_dtype_t* dtype);

SLIMRT_API void slimrt_session_options_init(slimrt_session_options_t* options);
SLIMRT_API slimrt_status_t slimrt_session_create(const slimrt_model_t* model, const slimrt_session_options_t* options,
                                                 slimrt_session_t** out);
SLIMRT_API void slimrt_session_free(slimrt_session_t* session);
/* Fills each output's dtype/ndim/dims for these inputs without running (to size buffers). */
SLIMRT_API slimrt_status_t slimrt_session_output_shapes(slimrt_session_t* session, const slimrt_tensor_t* inputs,
                                                        int32_t n_inputs, slimrt_output_t* outputs, int32_t n_outputs);
/* Width multipliers of a slimmable model, widest first; *n = 0 for a plain model. widths may be NULL
   to query n; otherwise it must hold *n values on input (capacity) and gets them on output. */
SLIMRT_API slimrt_status_t slimrt_session_widths(slimrt_session_t* session, double* widths, int32_t* n);
/* Like slimrt_session_run, with the width forced (0 = let the scheduler pick, or the widest);
   *used_width (may be NULL) gets the width that ran (1 for a plain model). */
SLIMRT_API slimrt_status_t slimrt_session_run_width(slimrt_session_t* session, double width,
                                                    const slimrt_tensor_t* inputs, int32_t n_inputs,
                                                    slimrt_output_t* outputs, int32_t n_outputs, double* used_width);
/* Runs the model. Fails with SLIMRT_ERR_INVALID_ARGUMENT when an output's capacity is too small. */
SLIMRT_API slimrt_status_t slimrt_session_run(slimrt_session_t* session, const slimrt_tensor_t* inputs,
                                              int32_t n_inputs, slimrt_output_t* outputs, int32_t n_outputs);

#ifdef __cplusplus
}
#endif
#endif /* SLIMRT_SLIMRT_H_ */
