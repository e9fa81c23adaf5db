// ONNX Runtime custom op `wallwm.BlockSparseAttention`: the CPU block-sparse attention kernel (attention.cpp)
// inside an exported student, so the deployed graph runs our kernel instead of dense masked attention.
//
// The op library IS the `_C` module: it exports the C symbol `RegisterCustomOps`, which onnxruntime looks up
// when Python calls `SessionOptions.register_custom_ops_library(_C.__file__)`. So there is no second shared
// library to build, ship or keep in step with `_C`, and the wheel carries the op wherever it carries `_C`.
// Only onnxruntime's C API is used (vendored header, third_party/onnxruntime, API 29, MIT): it is
// append-only, so one build works with any onnxruntime whose API is >= 16 (we ask for the newest version
// the running onnxruntime knows, and declare that version in the op, so it reads no field it lacks).
//
//   BlockSparseAttention(q, k, v, mask) -> out        domain "wallwm", since version 1
//     q, k, v, out (B, H, S, D) float32; mask bool (B, 1, S, S) or (S, S) (mask batch 1 broadcasts): the
//     shapes that broadcast over heads in the standard-op body too
//     attributes: scale (float; default 1/sqrt(D), but the standard-op body needs it set), block (int, default
//     16: the block-mask tile)
//   out = softmax(scale q k^T | mask) v per (batch, head); a row with no allowed key gives zeros.
//
// The mask is per sample (the runtime passes each observation's sight-cone mask), so the block mask is built
// per sample at every call: O(S^2) bytes, far below the attention itself. Threads: the op uses exactly the
// threads the session was given, like every other node, and never starts the kernel's OpenMP team inside
// onnxruntime's threads. With several, the (sample, head) pairs are tasks of the session's intra-op pool
// (KernelContext_ParallelFor); with one (the runtime's usual setting), one kernel call per sample. The graph keeps a standard-op
// body of the op as an ONNX function (wallwm_edge/export/attention_op.py), which onnxruntime inlines when
// this library is not registered: the same file runs with or without it.
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels.h"
#include "third_party/onnxruntime/onnxruntime_c_api.h"

namespace {

constexpr int kMinApi = 16;  // CreateKernelV2 / KernelComputeV2 (onnxruntime 1.16)
const OrtApi* g_api = nullptr;
int g_api_version = 0;

struct Kernel {
  float scale = 0.0f;  // 0: 1/sqrt(D) at run time
  int64_t block = 16;
  int threads = 0;  // the session's intra-op threads (session config "wallwm.intra_op_num_threads"); 0: unknown
};

// Session config entry that wallwm_edge.export.attention_op.register sets from SessionOptions.intra_op_num_threads.
constexpr const char* kThreadsKey = "wallwm.intra_op_num_threads";

// One tensor's shape and data pointer; the error status (or nullptr) says whether it could be read.
struct Tensor {
  std::vector<int64_t> shape;
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  void* data = nullptr;
};

OrtStatus* read_tensor(const OrtValue* value, Tensor& t) {
  OrtTensorTypeAndShapeInfo* info = nullptr;
  if (OrtStatus* s = g_api->GetTensorTypeAndShape(value, &info)) return s;
  size_t rank = 0;
  OrtStatus* s = g_api->GetDimensionsCount(info, &rank);
  if (!s) {
    t.shape.assign(rank, 0);
    s = g_api->GetDimensions(info, t.shape.data(), rank);
  }
  if (!s) s = g_api->GetTensorElementType(info, &t.type);
  g_api->ReleaseTensorTypeAndShapeInfo(info);
  if (s) return s;
  return g_api->GetTensorMutableData(const_cast<OrtValue*>(value), &t.data);
}

// The kernel's OpenMP loops held to the calling thread while alive: inside onnxruntime the session's threads
// are the parallelism (its intra-op thread count is the user's budget), so no OpenMP team is started there.
// The setting is per thread and restored, so Python's own calls of _C on this thread keep their threads.
class SerialOpenMP {
 public:
#ifdef _OPENMP
  SerialOpenMP() : before_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~SerialOpenMP() { omp_set_num_threads(before_); }

 private:
  int before_;
#else
  SerialOpenMP() {}  // user-provided: no "unused variable" warning where OpenMP is absent
  ~SerialOpenMP() {}
#endif
};

// One call's inputs, shared by the tasks that compute its (sample, head) pairs.
struct Job {
  const float *q, *k, *v;
  float* out;
  const uint8_t* mask;  // (mB, S, S)
  const std::vector<std::vector<uint8_t>>* block_masks;  // one per mask sample
  int64_t mB, H, S, D, block;
  float scale;
};

// Heads [h0, h0 + nh) of sample b, on the calling thread.
void run_heads(const Job& j, int64_t b, int64_t h0, int64_t nh) {
  const int64_t m = j.mB == 1 ? 0 : b, at = (b * j.H + h0) * j.S * j.D;
  SerialOpenMP serial;
  wallwm::block_sparse_attention_cpu(j.q + at, j.k + at, j.v + at, 1, nh, j.S, j.D, j.mask + m * j.S * j.S,
                                     (*j.block_masks)[size_t(m)].data(), j.block, j.scale, nullptr, j.out + at);
}

void run_head(void* job_, size_t task) {  // a task of onnxruntime's thread pool: one (sample, head)
  const Job& j = *static_cast<const Job*>(job_);
  run_heads(j, int64_t(task) / j.H, int64_t(task) % j.H, 1);
}

OrtStatus* fail(const std::string& msg) {
  return g_api->CreateStatus(ORT_INVALID_ARGUMENT, ("wallwm.BlockSparseAttention: " + msg).c_str());
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + ")";
}

OrtStatus* compute_impl(const Kernel& kernel, OrtKernelContext* ctx);

OrtStatus* ORT_API_CALL compute(void* kernel, OrtKernelContext* ctx) {
  try {  // nothing may unwind into onnxruntime's C frames
    return compute_impl(*static_cast<const Kernel*>(kernel), ctx);
  } catch (const std::exception& e) {
    return g_api->CreateStatus(ORT_FAIL, (std::string("wallwm.BlockSparseAttention: ") + e.what()).c_str());
  }
}

OrtStatus* compute_impl(const Kernel& kernel, OrtKernelContext* ctx) {
  Tensor in[4];
  for (size_t i = 0; i < 4; ++i) {
    const OrtValue* value = nullptr;
    if (OrtStatus* s = g_api->KernelContext_GetInput(ctx, i, &value)) return s;
    if (!value) return fail("input " + std::to_string(i) + " is missing");
    if (OrtStatus* s = read_tensor(value, in[i])) return s;
  }
  const Tensor &q = in[0], &k = in[1], &v = in[2], &mask = in[3];
  // Checked here, not trusted: the op runs inside graphs written by other tools too.
  if (q.shape.size() != 4) return fail("q: expected (B, H, S, D), got " + shape_str(q.shape));
  if (k.shape != q.shape || v.shape != q.shape)
    return fail("k, v: expected the shape of q " + shape_str(q.shape) + ", got " + shape_str(k.shape) + " and " + shape_str(v.shape));
  for (const Tensor* t : {&q, &k, &v})
    if (t->type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) return fail("q, k, v: expected float32");
  if (mask.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL) return fail("mask: expected bool");
  const int64_t B = q.shape[0], H = q.shape[1], S = q.shape[2], D = q.shape[3];
  const auto& ms = mask.shape;
  const bool ok_rank = ms.size() == 2 || (ms.size() == 4 && ms[1] == 1);
  const bool ok_tail = ms.size() >= 2 && ms[ms.size() - 1] == S && ms[ms.size() - 2] == S;
  const int64_t mB = ms.size() == 4 ? ms[0] : 1;
  if (!ok_rank || !ok_tail || (mB != B && mB != 1))
    return fail("mask: expected (B, 1, S, S) or (S, S) with B = " + std::to_string(B) + ", S = " + std::to_string(S) +
                ", got " + shape_str(ms));
  const int64_t shape[4] = {B, H, S, D};
  OrtValue* out_value = nullptr;
  if (OrtStatus* s = g_api->KernelContext_GetOutput(ctx, 0, shape, 4, &out_value)) return s;
  void* out = nullptr;
  if (OrtStatus* s = g_api->GetTensorMutableData(out_value, &out)) return s;
  if (B * H * S * D == 0) return nullptr;

  const int64_t nb = (S + kernel.block - 1) / kernel.block;
  const uint8_t* m = static_cast<const uint8_t*>(mask.data);  // ONNX bool is one byte, 0 or 1
  std::vector<std::vector<uint8_t>> block_masks(size_t(mB), std::vector<uint8_t>(size_t(nb * nb)));
  {
    SerialOpenMP serial;
    for (int64_t b = 0; b < mB; ++b) wallwm::block_mask_cpu(m + b * S * S, S, kernel.block, block_masks[size_t(b)].data());
  }
  Job job{static_cast<const float*>(q.data), static_cast<const float*>(k.data), static_cast<const float*>(v.data),
          static_cast<float*>(out), m, &block_masks, mB, H, S, D, kernel.block,
          kernel.scale > 0.0f ? kernel.scale : 1.0f / std::sqrt(float(D))};
  if (kernel.threads != 1 && g_api_version >= 17)  // onnxruntime >= 1.17: the pool spreads the heads
    return g_api->KernelContext_ParallelFor(ctx, run_head, size_t(B * H), 0, &job);
  // One thread: one kernel call per sample (all heads), which saves the per-call setup (head-dim padding,
  // scratch) of H separate calls, ~15 % of the op at the student's size.
  for (int64_t b = 0; b < B; ++b) run_heads(job, b, 0, H);
  return nullptr;
}

OrtStatus* ORT_API_CALL create_kernel(const OrtCustomOp*, const OrtApi* api, const OrtKernelInfo* info, void** out) {
  auto* kernel = new Kernel();
  float scale = 0.0f;
  if (OrtStatus* s = api->KernelInfoGetAttribute_float(info, "scale", &scale)) {
    api->ReleaseStatus(s);  // absent: 1/sqrt(D)
    scale = 0.0f;
  }
  int64_t block = 16;
  if (OrtStatus* s = api->KernelInfoGetAttribute_int64(info, "block", &block)) {
    api->ReleaseStatus(s);
    block = 16;
  }
  if (block < 1 || block > 4096 || !(scale >= 0.0f) || !std::isfinite(scale)) {
    delete kernel;
    return api->CreateStatus(ORT_INVALID_ARGUMENT, "wallwm.BlockSparseAttention: block must be in [1, 4096], scale finite and >= 0");
  }
  kernel->scale = scale;
  kernel->block = block;
  if (g_api_version >= 24) {  // onnxruntime >= 1.24 shows kernels the session's config entries
    OrtKeyValuePairs* config = nullptr;
    if (OrtStatus* s = api->KernelInfo_GetConfigEntries(info, &config)) {
      api->ReleaseStatus(s);
    } else {
      const char* threads = api->GetKeyValue(config, kThreadsKey);
      kernel->threads = threads ? std::atoi(threads) : 0;
      api->ReleaseKeyValuePairs(config);
    }
  }
  *out = kernel;
  return nullptr;
}

void ORT_API_CALL destroy_kernel(void* kernel) { delete static_cast<Kernel*>(kernel); }
const char* ORT_API_CALL op_name(const OrtCustomOp*) { return "BlockSparseAttention"; }
const char* ORT_API_CALL op_provider(const OrtCustomOp*) { return "CPUExecutionProvider"; }
ONNXTensorElementDataType ORT_API_CALL input_type(const OrtCustomOp*, size_t i) {
  return i == 3 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}
size_t ORT_API_CALL input_count(const OrtCustomOp*) { return 4; }
ONNXTensorElementDataType ORT_API_CALL output_type(const OrtCustomOp*, size_t) { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
size_t ORT_API_CALL output_count(const OrtCustomOp*) { return 1; }
OrtCustomOpInputOutputCharacteristic ORT_API_CALL required(const OrtCustomOp*, size_t) { return INPUT_OUTPUT_REQUIRED; }
OrtMemType ORT_API_CALL mem_type(const OrtCustomOp*, size_t) { return OrtMemTypeDefault; }
int ORT_API_CALL min_arity(const OrtCustomOp*) { return 1; }
int ORT_API_CALL homogeneous(const OrtCustomOp*) { return 1; }
int ORT_API_CALL start_version(const OrtCustomOp*) { return 1; }
int ORT_API_CALL end_version(const OrtCustomOp*) { return std::numeric_limits<int>::max(); }

OrtCustomOp make_op(int version) {
  OrtCustomOp op;
  std::memset(&op, 0, sizeof(op));  // fields newer than `version` stay null and are never read
  op.version = uint32_t(version);
  op.GetName = op_name;
  op.GetExecutionProviderType = op_provider;
  op.GetInputType = input_type;
  op.GetInputTypeCount = input_count;
  op.GetOutputType = output_type;
  op.GetOutputTypeCount = output_count;
  op.KernelDestroy = destroy_kernel;
  op.GetInputCharacteristic = required;
  op.GetOutputCharacteristic = required;
  op.GetInputMemoryType = mem_type;
  op.GetVariadicInputMinArity = min_arity;
  op.GetVariadicInputHomogeneity = homogeneous;
  op.GetVariadicOutputMinArity = min_arity;
  op.GetVariadicOutputHomogeneity = homogeneous;
  op.CreateKernelV2 = create_kernel;
  op.KernelComputeV2 = compute;
  op.GetStartVersion = start_version;
  op.GetEndVersion = end_version;
  return op;
}

// One op and one domain for the life of the process: onnxruntime does not own them, and every session
// registered with this library (each SessionOptions calls RegisterCustomOps again) refers to the same pair.
OrtCustomOp g_op;
OrtCustomOpDomain* g_domain = nullptr;
std::once_flag g_once;

}  // namespace

// pybind11 builds _C with hidden symbols: this one must be visible, it is what onnxruntime looks up.
#if defined(_WIN32)
#define WALLWM_ORT_EXPORT __declspec(dllexport)
#else
#define WALLWM_ORT_EXPORT __attribute__((visibility("default")))
#endif

extern "C" WALLWM_ORT_EXPORT OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* base) {
  OrtStatus* status = nullptr;
  std::call_once(g_once, [&] {
    for (int v = ORT_API_VERSION; v >= kMinApi && !g_api; --v) {  // the newest API both sides know
      g_api = base->GetApi(uint32_t(v));
      g_api_version = v;
    }
    if (!g_api) return;
    g_op = make_op(g_api_version);
    status = g_api->CreateCustomOpDomain("wallwm", &g_domain);
    if (!status) status = g_api->CustomOpDomain_Add(g_domain, &g_op);
    if (status) g_domain = nullptr;
  });
  if (status) return status;
  if (!g_api) return nullptr;  // onnxruntime older than 1.16: no status object to say so; the op stays unregistered
  if (!g_domain) return g_api->CreateStatus(ORT_FAIL, "wallwm.BlockSparseAttention: registering the op domain failed earlier");
  return g_api->AddCustomOpDomain(options, g_domain);
}
