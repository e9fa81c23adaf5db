// wallwm_edge._C: the Python surface of the kernels and EVERY input check (the kernels trust their inputs).
//
// Arrays come in without torch (tried in this order):
//   - CPU: the buffer protocol (numpy, memoryview, ...) or DLPack (torch CPU tensors, numpy >= 1.22);
//   - CUDA: __cuda_array_interface__ (CuPy, torch, Numba) or DLPack (torch / CuPy, also bfloat16).
// Whatever is wrong (dtype, shape, strides, device, read-only output) raises ValueError naming the
// argument; nothing reaches a kernel unchecked. The device of `q` (or `x`) picks the CPU or CUDA kernel.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstring>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "kernels.h"

namespace py = pybind11;
using namespace wallwm;

namespace {

enum class DT { f16, bf16, f32, f64, i32, i64, u8, b1, other };
const char* dt_name(DT d) {
  switch (d) {
    case DT::f16: return "float16";
    case DT::bf16: return "bfloat16";
    case DT::f32: return "float32";
    case DT::f64: return "float64";
    case DT::i32: return "int32";
    case DT::i64: return "int64";
    case DT::u8: return "uint8";
    case DT::b1: return "bool";
    default: return "an unsupported dtype";
  }
}

[[noreturn]] void fail(const std::string& msg) { throw py::value_error(msg); }

std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << (s.size() == 1 ? ",)" : ")");
  return o.str();
}

// ---- DLPack (the stable v0.x ABI, declared here so no header is needed) ---------------------------------
struct DLDevice { int32_t device_type; int32_t device_id; };
struct DLDataType { uint8_t code; uint8_t bits; uint16_t lanes; };
struct DLTensor {
  void* data; DLDevice device; int32_t ndim; DLDataType dtype; int64_t* shape; int64_t* strides; uint64_t byte_offset;
};
struct DLManagedTensor { DLTensor dl_tensor; void* manager_ctx; void (*deleter)(DLManagedTensor*); };
enum { kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLCUDAManaged = 13 };

// A borrowed view of one argument, valid while the call runs (keeps the producer's object alive).
struct Arr {
  std::string name;
  void* ptr = nullptr;
  DT dtype = DT::other;
  std::vector<int64_t> shape, strides;  // strides in bytes
  bool cuda = false;
  int device = 0;
  bool readonly = false;
  py::object keep;
  std::shared_ptr<py::buffer_info> info;

  int64_t itemsize() const {
    switch (dtype) {
      case DT::f16: case DT::bf16: return 2;
      case DT::f32: case DT::i32: return 4;
      case DT::f64: case DT::i64: return 8;
      default: return 1;
    }
  }
  int64_t numel() const {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
  std::string where() const { return cuda ? "cuda:" + std::to_string(device) : "cpu"; }
  template <class T> T* data() const { return static_cast<T*>(ptr); }
};

DT from_typestr(const std::string& t) {
  if (t.size() < 3) return DT::other;
  char kind = t[1];
  int size = std::atoi(t.c_str() + 2);
  if (kind == 'f' && size == 2) return DT::f16;
  if (kind == 'f' && size == 4) return DT::f32;
  if (kind == 'f' && size == 8) return DT::f64;
  if (kind == 'i' && size == 4) return DT::i32;
  if (kind == 'i' && size == 8) return DT::i64;
  if (kind == 'u' && size == 1) return DT::u8;
  if (kind == 'b' && size == 1) return DT::b1;
  return DT::other;
}

DT from_format(const std::string& f, py::ssize_t itemsize) {
  std::string c = f;
  while (!c.empty() && (c[0] == '<' || c[0] == '=' || c[0] == '@' || c[0] == '!')) c.erase(0, 1);
  if (c == "f") return DT::f32;
  if (c == "d") return DT::f64;
  if (c == "e") return DT::f16;
  if (c == "?") return DT::b1;
  if (c == "B") return DT::u8;
  if ((c == "i" || c == "l" || c == "q") && itemsize == 4) return DT::i32;
  if ((c == "l" || c == "q") && itemsize == 8) return DT::i64;
  return DT::other;
}

DT from_dlpack(DLDataType t) {
  if (t.lanes != 1) return DT::other;
  if (t.code == 2 && t.bits == 16) return DT::f16;   // kDLFloat
  if (t.code == 2 && t.bits == 32) return DT::f32;
  if (t.code == 2 && t.bits == 64) return DT::f64;
  if (t.code == 4 && t.bits == 16) return DT::bf16;  // kDLBfloat
  if (t.code == 0 && t.bits == 32) return DT::i32;   // kDLInt
  if (t.code == 0 && t.bits == 64) return DT::i64;
  if (t.code == 1 && t.bits == 8) return DT::u8;     // kDLUInt
  if (t.code == 6 && t.bits == 8) return DT::b1;     // kDLBool
  if (t.code == 1 && t.bits == 1) return DT::b1;
  return DT::other;
}

Arr parse(py::handle obj, const std::string& name) {
  Arr a;
  a.name = name;
  if (obj.is_none()) fail(name + ": expected an array, got None");
  if (PyObject_CheckBuffer(obj.ptr())) {
    py::buffer buf = py::reinterpret_borrow<py::buffer>(obj);
    py::buffer_info info;
    try {
      info = buf.request(true);
    } catch (py::error_already_set&) {
      info = buf.request(false);
      a.readonly = true;
    }
    a.ptr = info.ptr;
    a.dtype = from_format(info.format, info.itemsize);
    a.shape.assign(info.shape.begin(), info.shape.end());
    a.strides.assign(info.strides.begin(), info.strides.end());
    a.info = std::make_shared<py::buffer_info>(std::move(info));
    a.keep = py::reinterpret_borrow<py::object>(obj);
    return a;
  }
  // CPU arrays without the buffer protocol (torch CPU tensors) go through DLPack: asking them for
  // __cuda_array_interface__ costs a raised AttributeError on every call.
  bool dl_cpu = false;
  if (py::hasattr(obj, "__dlpack_device__")) {
    py::tuple dev = obj.attr("__dlpack_device__")();
    dl_cpu = dev.size() == 2 && dev[0].cast<int>() == kDLCPU;
  }
  if (!dl_cpu && py::hasattr(obj, "__cuda_array_interface__")) {
    py::dict cai = obj.attr("__cuda_array_interface__");
    a.cuda = true;
    for (auto s : cai["shape"].cast<py::tuple>()) a.shape.push_back(s.cast<int64_t>());
    a.dtype = from_typestr(cai["typestr"].cast<std::string>());
    auto data = cai["data"].cast<py::tuple>();
    a.ptr = reinterpret_cast<void*>(data[0].cast<uintptr_t>());
    a.readonly = data[1].cast<bool>();
    if (cai.contains("strides") && !cai["strides"].is_none())
      for (auto s : cai["strides"].cast<py::tuple>()) a.strides.push_back(s.cast<int64_t>());
    if (a.strides.empty()) {
      a.strides.assign(a.shape.size(), 0);
      int64_t st = a.itemsize();
      for (int i = int(a.shape.size()) - 1; i >= 0; --i) { a.strides[i] = st; st *= a.shape[i]; }
    }
    a.keep = py::reinterpret_borrow<py::object>(obj);
    return a;
  }
  if (py::hasattr(obj, "__dlpack__")) {
    py::object cap = obj.attr("__dlpack__")();
    if (!PyCapsule_IsValid(cap.ptr(), "dltensor")) fail(name + ": __dlpack__ did not return a DLPack capsule");
    auto* mt = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap.ptr(), "dltensor"));
    const DLTensor& t = mt->dl_tensor;
    if (t.device.device_type == kDLCUDA || t.device.device_type == kDLCUDAManaged) {
      a.cuda = true;
    } else if (t.device.device_type != kDLCPU && t.device.device_type != kDLCUDAHost) {
      fail(name + ": arrays on DLPack device type " + std::to_string(t.device.device_type) +
           " are not supported (cpu or cuda only)");
    }
    a.device = t.device.device_id;
    a.ptr = static_cast<char*>(t.data) + t.byte_offset;
    a.dtype = from_dlpack(t.dtype);
    a.shape.assign(t.shape, t.shape + t.ndim);
    a.strides.assign(t.ndim, 0);
    int64_t st = 1;
    for (int i = t.ndim - 1; i >= 0; --i) {
      a.strides[i] = (t.strides ? t.strides[i] : st) * a.itemsize();
      st *= t.shape[i];
    }
    a.keep = cap;  // the capsule's destructor calls the producer's deleter once we are done
    return a;
  }
  fail(name + ": expected an array (numpy, torch, CuPy: buffer protocol, DLPack or __cuda_array_interface__), got " +
       std::string(py::str(py::type::of(obj).attr("__name__"))));
}

void expect_dtype(const Arr& a, std::initializer_list<DT> ok) {
  for (DT d : ok)
    if (a.dtype == d) return;
  std::string want;
  for (DT d : ok) want += (want.empty() ? "" : " or ") + std::string(dt_name(d));
  fail(a.name + ": expected dtype " + want + ", got " + dt_name(a.dtype));
}

// want: -1 = any size. `like` names the argument the size must match, for the message.
void expect_shape(const Arr& a, const std::vector<int64_t>& want, const std::string& like = "") {
  bool ok = a.shape.size() == want.size();
  for (size_t i = 0; ok && i < want.size(); ++i) ok = want[i] < 0 || want[i] == a.shape[i];
  if (!ok) {
    std::string w = "(";
    for (size_t i = 0; i < want.size(); ++i) w += (i ? ", " : "") + (want[i] < 0 ? std::string("*") : std::to_string(want[i]));
    w += want.size() == 1 ? ",)" : ")";
    fail(a.name + ": expected shape " + w + (like.empty() ? "" : " (to match " + like + ")") + ", got " + shape_str(a.shape));
  }
}

void expect_contiguous(const Arr& a) {
  int64_t st = a.itemsize();
  for (int i = int(a.shape.size()) - 1; i >= 0; --i) {
    if (a.shape[i] != 1 && a.strides[i] != st)
      fail(a.name + ": must be C-contiguous (call .contiguous() / np.ascontiguousarray), got strides " + shape_str(a.strides) +
           " for shape " + shape_str(a.shape));
    st *= a.shape[i];
  }
}

void expect_device(const Arr& a, const Arr& ref) {
  if (a.cuda != ref.cuda || (a.cuda && a.device != ref.device))
    fail(a.name + ": is on " + a.where() + " but " + ref.name + " is on " + ref.where() + " (all arrays must be on one device)");
}

void expect_writable(const Arr& a) {
  if (a.readonly) fail(a.name + ": output array is read-only");
}

Arr checked(py::handle obj, const std::string& name, std::initializer_list<DT> dts, const std::vector<int64_t>& shape,
            const Arr* device_of = nullptr, const std::string& like = "") {
  Arr a = parse(obj, name);
  if (device_of) expect_device(a, *device_of);  // first: the most basic mistake gets the message
  expect_dtype(a, dts);
  expect_shape(a, shape, like);
  expect_contiguous(a);
  return a;
}

void expect_cpu(const Arr& a, const char* op) {
  if (a.cuda) fail(a.name + ": " + op + " runs on the CPU only; got an array on " + a.where());
}

void* stream_ptr(uintptr_t s) { return reinterpret_cast<void*>(s); }

[[noreturn]] void no_cuda(const Arr& a) {
  fail(a.name + ": is on " + a.where() + " but wallwm_edge._C was built without CUDA (rebuild with nvcc on PATH)");
}

#ifdef WALLWM_WITH_CUDA
void cuda_check(const char* err, const char* op) {
  if (err && *err) throw std::runtime_error(std::string(op) + ": CUDA error: " + err);
}
#endif

// ---- ops ---------------------------------------------------------------------------------------------------

py::array_t<bool> sightcone_mask(py::handle K_, py::handle dist_, py::handle T_, py::handle hw_, int64_t patch,
                                 double near, double far, py::handle ws_) {
  Arr K = parse(K_, "K");
  expect_dtype(K, {DT::f64});
  if (K.shape.size() != 3) expect_shape(K, {-1, 3, 3});
  const int64_t V = K.shape[0];
  if (V < 1) fail("K: need at least one camera, got shape " + shape_str(K.shape));
  K = checked(K_, "K", {DT::f64}, {V, 3, 3});
  Arr dist = checked(dist_, "dist", {DT::f64}, {V, 5}, &K, "K");
  Arr T = checked(T_, "T_base_cam", {DT::f64}, {V, 4, 4}, &K, "K");
  Arr hw = checked(hw_, "hw", {DT::i64}, {V, 2}, &K, "K");
  expect_cpu(K, "sightcone_mask");
  if (patch <= 0) fail("patch: must be positive, got " + std::to_string(patch));
  if (!(std::isfinite(near) && std::isfinite(far) && 0 < near && near < far))
    fail("near/far: need 0 < near < far, got near=" + std::to_string(near) + ", far=" + std::to_string(far));
  int64_t N = 0;
  for (int64_t c = 0; c < V; ++c) {
    const int64_t h = hw.data<int64_t>()[2 * c], w = hw.data<int64_t>()[2 * c + 1];
    if (h <= 0 || w <= 0 || h % patch || w % patch)
      fail("patch: " + std::to_string(patch) + " does not divide camera " + std::to_string(c) + " image size " +
           std::to_string(w) + "x" + std::to_string(h));
    const double* k = K.data<double>() + 9 * c;
    if (!(k[0] > 0 && k[4] > 0) || k[3] != 0 || k[6] != 0 || k[7] != 0 || k[8] != 1)
      fail("K: camera " + std::to_string(c) + " needs an upper-triangular K with fx, fy > 0 and K[2] = [0, 0, 1]");
    N += (h / patch) * (w / patch);
  }
  for (const Arr* a : {&K, &dist, &T})
    for (int64_t i = 0; i < a->numel(); ++i)
      if (!std::isfinite(a->data<double>()[i])) fail(a->name + ": has NaN or inf");
  const double* ws = nullptr;
  Arr W;
  if (!ws_.is_none()) {
    W = checked(ws_, "workspace", {DT::f64}, {2, 3});
    expect_cpu(W, "sightcone_mask");
    ws = W.data<double>();
    for (int d = 0; d < 3; ++d)
      if (!(ws[d] < ws[3 + d])) fail("workspace: need min < max on every axis, got min[" + std::to_string(d) + "] >= max");
  }
  py::array_t<bool> out({N, N});
  uint8_t* o = reinterpret_cast<uint8_t*>(out.mutable_data());
  {
    py::gil_scoped_release nogil;
    sightcone_mask_cpu(K.data<double>(), dist.data<double>(), T.data<double>(), hw.data<int64_t>(), int(V),
                       int(patch), near, far, ws, o);
  }
  return out;
}

py::array_t<bool> block_mask(py::handle mask_, int64_t block) {
  Arr m = parse(mask_, "mask");
  expect_dtype(m, {DT::b1, DT::u8});
  if (m.shape.size() != 2 || m.shape[0] != m.shape[1]) fail("mask: must be square (N, N), got " + shape_str(m.shape));
  expect_contiguous(m);
  expect_cpu(m, "block_mask");
  if (block <= 0) fail("block: must be positive, got " + std::to_string(block));
  const int64_t N = m.shape[0], nb = (N + block - 1) / block;
  py::array_t<bool> out({nb, nb});
  uint8_t* o = reinterpret_cast<uint8_t*>(out.mutable_data());
  {
    py::gil_scoped_release nogil;
    block_mask_cpu(m.data<uint8_t>(), N, block, o);
  }
  return out;
}

void attention_forward(py::handle q_, py::handle k_, py::handle v_, py::handle mask_, py::handle bmask_, int64_t block,
                       double scale, py::handle out_, uintptr_t stream, py::handle order_) {
  Arr q = parse(q_, "q");
  expect_dtype(q, {DT::f32, DT::f16, DT::bf16});
  if (q.shape.size() != 4) fail("q: expected shape (B, H, N, D), got " + shape_str(q.shape));
  expect_contiguous(q);
  if (!q.cuda && q.dtype != DT::f32) fail("q: the CPU kernel takes float32, got " + std::string(dt_name(q.dtype)));
  const int64_t B = q.shape[0], H = q.shape[1], N = q.shape[2], D = q.shape[3];
  if (N < 1 || D < 1) fail("q: N and D must be positive, got shape " + shape_str(q.shape));
  const std::initializer_list<DT> same = {q.dtype};
  Arr k = checked(k_, "k", same, q.shape, &q, "q");
  Arr v = checked(v_, "v", same, q.shape, &q, "q");
  Arr out = checked(out_, "out", same, q.shape, &q, "q");
  expect_writable(out);
  Arr mask = checked(mask_, "mask", {DT::b1, DT::u8}, {N, N}, &q, "q's N");
  if (block <= 0) fail("block: must be positive, got " + std::to_string(block));
  const int64_t nb = (N + block - 1) / block;
  Arr bmask = checked(bmask_, "block_mask", {DT::b1, DT::u8}, {nb, nb}, &q, "ceil(N / block)");
  if (!std::isfinite(scale)) fail("scale: must be finite");
  Arr order;
  const int32_t* op = nullptr;
  if (!order_.is_none()) {  // a CPU scheduling hint: checked, then used by the CPU kernel only
    order = checked(order_, "row_order", {DT::i32}, {N}, nullptr, "q's N");
    expect_cpu(order, "row_order");
    std::vector<uint8_t> seen(N, 0);
    for (int64_t p = 0; p < N; ++p) {
      const int32_t r = order.data<int32_t>()[p];
      if (r < 0 || r >= N || seen[r]) fail("row_order: must be a permutation of 0..N-1 (bad or repeated entry at " + std::to_string(p) + ")");
      seen[r] = 1;
    }
    op = order.data<int32_t>();
  }
  if (!q.cuda) {
    py::gil_scoped_release nogil;
    block_sparse_attention_cpu(q.data<float>(), k.data<float>(), v.data<float>(), B, H, N, D, mask.data<uint8_t>(),
                               bmask.data<uint8_t>(), block, float(scale), op, out.data<float>());
    return;
  }
#ifdef WALLWM_WITH_CUDA
  if (q.dtype == DT::f32) fail("q: the CUDA kernel takes float16 or bfloat16, got float32");
  if (D > 256) fail("q: the CUDA kernel supports head dim D <= 256, got " + std::to_string(D));
  cuda_check(block_sparse_attention_cuda(q.dtype == DT::bf16 ? 1 : 0, q.ptr, k.ptr, v.ptr, B, H, N, D,
                                         mask.data<uint8_t>(), bmask.data<uint8_t>(), block, float(scale), out.ptr,
                                         stream_ptr(stream)),
             "attention_forward");
#else
  (void)stream;
  no_cuda(q);
#endif
}

// One flow-matching (sub)step on any device: out = freeze(x + dt (w1 v1 + w2 v2), prefix).
void flow_update(py::handle x_, py::handle v1_, py::handle v2_, double w1, double w2, double dt, py::handle prefix_,
                 py::handle out_, uintptr_t stream) {
  Arr x = parse(x_, "x");
  expect_dtype(x, {DT::f32});
  if (x.shape.size() != 3) fail("x: expected shape (B, L, A), got " + shape_str(x.shape));
  expect_contiguous(x);
  const int64_t B = x.shape[0], L = x.shape[1], A = x.shape[2];
  Arr v1 = checked(v1_, "v1", {DT::f32}, x.shape, &x, "x");
  Arr out = checked(out_, "out", {DT::f32}, x.shape, &x, "x");
  expect_writable(out);
  Arr v2, pre;
  const float* v2p = nullptr;
  const float* pp = nullptr;
  int64_t P = 0;
  if (!v2_.is_none()) {
    v2 = checked(v2_, "v2", {DT::f32}, x.shape, &x, "x");
    v2p = v2.data<float>();
  }
  if (!prefix_.is_none()) {
    pre = checked(prefix_, "prefix", {DT::f32}, {B, -1, A}, &x, "x");
    P = pre.shape[1];
    if (P > L) fail("prefix: has " + std::to_string(P) + " rows but the chunk has only L=" + std::to_string(L));
    pp = pre.data<float>();
  }
  if (!(std::isfinite(dt) && std::isfinite(w1) && std::isfinite(w2))) fail("dt: dt, w1 and w2 must be finite");
  if (!x.cuda) {
    py::gil_scoped_release nogil;
    flow_update_cpu(x.data<float>(), v1.data<float>(), v2p, float(w1), float(w2), float(dt), pp, B, L, A, P,
                    out.data<float>());
    return;
  }
#ifdef WALLWM_WITH_CUDA
  cuda_check(flow_update_cuda(x.data<float>(), v1.data<float>(), v2p, float(w1), float(w2), float(dt), pp, B, L, A, P,
                              out.data<float>(), stream_ptr(stream)),
             "flow_update");
#else
  (void)stream;
  no_cuda(x);
#endif
}

struct Finalize {
  Arr mean, std, lo, hi;
};

Finalize check_finalize(const Arr& x, int64_t A, py::handle mean_, py::handle std_, py::handle lo_, py::handle hi_) {
  Finalize f;
  f.mean = checked(mean_, "mean", {DT::f32}, {A}, &x, "x's last axis");
  f.std = checked(std_, "std", {DT::f32}, {A}, &x, "x's last axis");
  if (!lo_.is_none()) f.lo = checked(lo_, "lo", {DT::f32}, {A}, &x, "x's last axis");
  if (!hi_.is_none()) f.hi = checked(hi_, "hi", {DT::f32}, {A}, &x, "x's last axis");
  return f;
}

void unnormalize_clamp(py::handle x_, py::handle mean_, py::handle std_, py::handle lo_, py::handle hi_, py::handle out_,
                       uintptr_t stream) {
  Arr x = parse(x_, "x");
  expect_dtype(x, {DT::f32});
  if (x.shape.empty()) fail("x: expected at least one axis, got a scalar");
  expect_contiguous(x);
  const int64_t A = x.shape.back(), rows = A ? x.numel() / A : 0;
  Finalize f = check_finalize(x, A, mean_, std_, lo_, hi_);
  Arr out = checked(out_, "out", {DT::f32}, x.shape, &x, "x");
  expect_writable(out);
  const float* lo = f.lo.ptr ? f.lo.data<float>() : nullptr;
  const float* hi = f.hi.ptr ? f.hi.data<float>() : nullptr;
  if (!x.cuda) {
    py::gil_scoped_release nogil;
    unnormalize_clamp_cpu(x.data<float>(), f.mean.data<float>(), f.std.data<float>(), lo, hi, rows, A, out.data<float>());
    return;
  }
#ifdef WALLWM_WITH_CUDA
  cuda_check(unnormalize_clamp_cuda(x.data<float>(), f.mean.data<float>(), f.std.data<float>(), lo, hi, rows, A,
                                    out.data<float>(), stream_ptr(stream)),
             "unnormalize_clamp");
#else
  (void)stream;
  no_cuda(x);
#endif
}

// The fused CPU loop: K steps of Euler or Heun with the network as a Python callback velocity_fn(x, t) -> v,
// the prefix held after every (sub)step, then unnormalize + clamp into out. Returns the number of network calls.
int64_t denoise_loop(py::function velocity_fn, py::handle x0_, py::handle ts_, const std::string& method,
                     py::handle prefix_, py::handle mean_, py::handle std_, py::handle lo_, py::handle hi_,
                     py::handle out_) {
  Arr x0 = parse(x0_, "x0");
  expect_dtype(x0, {DT::f32});
  if (x0.shape.size() != 3) fail("x0: expected shape (B, L, A), got " + shape_str(x0.shape));
  expect_contiguous(x0);
  expect_cpu(x0, "denoise_loop (use flow_update on CUDA inside a captured graph)");
  const int64_t B = x0.shape[0], L = x0.shape[1], A = x0.shape[2], n = x0.numel();
  Arr ts = parse(ts_, "ts");
  expect_dtype(ts, {DT::f32, DT::f64});
  if (ts.shape.size() != 1 || ts.shape[0] < 2) fail("ts: expected shape (K + 1,) with K >= 1 steps, got " + shape_str(ts.shape));
  expect_contiguous(ts);
  expect_cpu(ts, "denoise_loop");
  std::vector<double> t(ts.shape[0]);
  for (int64_t i = 0; i < ts.shape[0]; ++i) {
    t[i] = ts.dtype == DT::f64 ? ts.data<double>()[i] : ts.data<float>()[i];
    if (!std::isfinite(t[i])) fail("ts: has NaN or inf at index " + std::to_string(i));
  }
  const bool heun = method == "heun";
  if (!heun && method != "euler") fail("method: must be 'euler' or 'heun', got '" + method + "'");
  Arr pre;
  const float* pp = nullptr;
  int64_t P = 0;
  if (!prefix_.is_none()) {
    pre = checked(prefix_, "prefix", {DT::f32}, {B, -1, A}, &x0, "x0");
    P = pre.shape[1];
    if (P > L) fail("prefix: has " + std::to_string(P) + " rows but the chunk has only L=" + std::to_string(L));
    pp = pre.data<float>();
  }
  Finalize f = check_finalize(x0, A, mean_, std_, lo_, hi_);
  Arr out = checked(out_, "out", {DT::f32}, x0.shape, &x0, "x0");
  expect_writable(out);

  py::array_t<float> x({B, L, A}), xp({B, L, A}), v1({B, L, A});
  float* xs = x.mutable_data();
  std::memcpy(xs, x0.data<float>(), sizeof(float) * n);
  for (int64_t b = 0; b < B && P > 0; ++b) std::memcpy(xs + b * L * A, pp + b * P * A, sizeof(float) * P * A);
  int64_t calls = 0;
  auto velocity = [&](const py::array_t<float>& at, double tt, const char* which) -> Arr {
    py::object r = velocity_fn(at, tt);
    ++calls;
    Arr v = parse(r, std::string("velocity_fn result (") + which + ")");
    expect_dtype(v, {DT::f32});
    expect_shape(v, x0.shape, "x0");
    expect_contiguous(v);
    expect_cpu(v, "denoise_loop");
    return v;
  };
  for (size_t k = 0; k + 1 < t.size(); ++k) {
    const float dt = float(t[k + 1] - t[k]);
    Arr va = velocity(x, t[k], "step");
    if (!heun) {
      flow_update_cpu(xs, va.data<float>(), nullptr, 1.f, 0.f, dt, pp, B, L, A, P, xs);
      continue;
    }
    std::memcpy(v1.mutable_data(), va.data<float>(), sizeof(float) * n);  // the callback may reuse its buffer
    flow_update_cpu(xs, v1.data(), nullptr, 1.f, 0.f, dt, pp, B, L, A, P, xp.mutable_data());
    Arr vb = velocity(xp, t[k + 1], "heun corrector");
    flow_update_cpu(xs, v1.data(), vb.data<float>(), 0.5f, 0.5f, dt, pp, B, L, A, P, xs);
  }
  unnormalize_clamp_cpu(xs, f.mean.data<float>(), f.std.data<float>(), f.lo.ptr ? f.lo.data<float>() : nullptr,
                        f.hi.ptr ? f.hi.data<float>() : nullptr, B * L, A, out.data<float>());
  return calls;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "wallwm-edge kernels (torch-free): sight-cone masks, block-sparse attention, fused denoising loop";
#ifdef WALLWM_WITH_CUDA
  m.attr("built_with_cuda") = true;
#else
  m.attr("built_with_cuda") = false;
#endif
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) fail("n: must be at least 1, got " + std::to_string(n));
#ifdef _OPENMP
        omp_set_num_threads(n);
#endif
      },
      py::arg("n"), "threads for the CPU kernels (OpenMP); default: OMP_NUM_THREADS or all cores");
  m.def(
      "get_num_threads",
      []() {
#ifdef _OPENMP
        return omp_get_max_threads();
#else
        return 1;
#endif
      },
      "threads the CPU kernels use");
  m.def("cuda_device_count", &cuda_device_count, "GPUs visible at run time (0 without CUDA, driver or device)");
  m.def("sightcone_mask", &sightcone_mask, py::arg("K"), py::arg("dist"), py::arg("T_base_cam"), py::arg("hw"),
        py::arg("patch"), py::arg("near"), py::arg("far"), py::arg("workspace") = py::none(),
        "(N, N) bool sight-cone token mask; same semantics as wallwm_edge.ops.sightcone.sightcone_token_mask");
  m.def("block_mask", &block_mask, py::arg("mask"), py::arg("block"), "(ceil(N/b), ceil(N/b)) any-allowed block mask");
  m.def("attention_forward", &attention_forward, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("mask"),
        py::arg("block_mask"), py::arg("block"), py::arg("scale"), py::arg("out"), py::arg("stream") = 0,
        py::arg("row_order") = py::none(),
        "block-sparse masked attention into out (B, H, N, D); float32 on CPU, float16/bfloat16 on CUDA");
  m.def(
      "attention_cpu_path",
      [](const std::string& isa) {
        int lanes = 0;
        const char* name = attention_cpu_path(isa.c_str(), &lanes);
        if (!name)
          fail("isa: expected 'auto' or one of the paths this CPU runs (compiled: " + std::string(attention_cpu_paths()) +
               "), got '" + isa + "'");
        return py::make_tuple(std::string(name), lanes);
      },
      py::arg("isa") = "",
      "(name, rows per tile) of the CPU attention's instruction-set path; isa='avx512'|'avx2'|'sse2'|'neon'|'auto' "
      "chooses it (default at the first call: WALLWM_CPU_ISA, else the widest the CPU runs)");
  m.def("flow_update", &flow_update, py::arg("x"), py::arg("v1"), py::arg("v2"), py::arg("w1"), py::arg("w2"),
        py::arg("dt"), py::arg("prefix"), py::arg("out"), py::arg("stream") = 0,
        "out = x + dt (w1 v1 + w2 v2), then out[:, :P] = prefix; CPU or CUDA (graph-capturable: no sync, no alloc)");
  m.def("unnormalize_clamp", &unnormalize_clamp, py::arg("x"), py::arg("mean"), py::arg("std"), py::arg("lo"),
        py::arg("hi"), py::arg("out"), py::arg("stream") = 0, "out = clamp(x * std + mean, lo, hi)");
  m.def("denoise_loop", &denoise_loop, py::arg("velocity_fn"), py::arg("x0"), py::arg("ts"), py::arg("method"),
        py::arg("prefix"), py::arg("mean"), py::arg("std"), py::arg("lo"), py::arg("hi"), py::arg("out"),
        "fused CPU denoising loop with a Python network callback; returns the number of network calls");
}
