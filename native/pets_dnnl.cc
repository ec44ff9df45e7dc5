// pets-trainer native CPU kernels: a small N-API addon over oneDNN (Debian libdnnl 2.x, C++ API).
//
// Every function works on the caller's Float32Arrays in place (no copies of activations): tfjs's CPU-style backend
// keeps tensor values in plain TypedArrays, whose memory is handed to oneDNN as user memory. Layouts are tfjs's:
// activations NHWC, filters HWIO ([kh, kw, ci, co]). Weights are reordered into the layout oneDNN's kernels want
// (format "any") into one reused scratch buffer per role, as PyTorch does for its mkldnn convolutions.
//
// Threads: oneDNN's OpenMP runtime is limited to `init(threads)` threads (one per worker by default).
// Formulas of the BatchNorm kernels: see src/training/compute/kernels/batch-norm.ts (float64 sums, as there).
#include <malloc.h>
#include <signal.h>
#include <node_api.h>
#include <omp.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <oneapi/dnnl/dnnl.hpp>

#include "napi_args.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

namespace {

using pets_napi::Args;
using pets_napi::JsError;

dnnl::engine& eng() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}
dnnl::stream& strm() {
  static dnnl::stream s(eng());
  return s;
}

template <typename F>
napi_value guarded(napi_env env, F&& f) {
  try {
    return f();
  } catch (const JsError& e) {
    napi_throw_error(env, "ERR_NATIVE", e.msg.c_str());
  } catch (const dnnl::error& e) {
    napi_throw_error(env, "ERR_NATIVE", (std::string("oneDNN: ") + e.what() + " (status " + std::to_string(e.status) + ")").c_str());
  } catch (const std::exception& e) {
    napi_throw_error(env, "ERR_NATIVE", e.what());
  }
  return nullptr;
}

napi_value undef(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

// ---- reusable scratch memory (calls are sequential: one JS thread) ----------------------------------------------
struct Scratch {
  std::vector<char> buf;
  void* get(size_t bytes) {
    if (buf.size() < bytes) {
      std::vector<char>().swap(buf);
      buf.resize(bytes);
    }
    return buf.data();
  }
};
Scratch gWeights;   // reordered weights (forward, input gradient) or blocked weight gradient
Scratch gPad;       // oneDNN scratchpad
Scratch gWorkspace; // max-pool workspace
Scratch gPoolOut;   // max-pool output recomputed by its backward

memory scratchpadFor(const dnnl::primitive_desc_base& pd) {
  auto md = pd.scratchpad_desc();
  return memory(md, eng(), gPad.get(md.get_size() + 64));
}

// ---- convolution ------------------------------------------------------------------------------------------------
struct ConvGeom {
  memory::dim n, ih, iw, ci, oh, ow, co, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw;
  std::string key() const {
    std::string k;
    for (auto d : {n, ih, iw, ci, oh, ow, co, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw}) k += std::to_string(d) + ",";
    return k;
  }
  memory::desc src(tag t = tag::nhwc) const { return memory::desc({n, ci, ih, iw}, dt::f32, t); }
  memory::desc dst(tag t = tag::nhwc) const { return memory::desc({n, co, oh, ow}, dt::f32, t); }
  memory::desc wei(tag t = tag::hwio) const { return memory::desc({co, ci, kh, kw}, dt::f32, t); }
  dnnl::convolution_forward::desc fwdDesc() const {
    return dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      src(), wei(tag::any), dst(), {sh, sw}, {dh - 1, dw - 1}, {pt, pl}, {pb, pr});
  }
};

// args: geometry numbers start at index `first`: n ih iw ci oh ow co kh kw sh sw pt pl pb pr dh dw
ConvGeom readGeom(Args& a, size_t first) {
  ConvGeom g;
  memory::dim* f[] = {&g.n, &g.ih, &g.iw, &g.ci, &g.oh, &g.ow, &g.co, &g.kh, &g.kw, &g.sh, &g.sw, &g.pt, &g.pl, &g.pb, &g.pr, &g.dh, &g.dw};
  for (size_t i = 0; i < 17; i++) *f[i] = a.i64(first + i);
  for (size_t i = 0; i < 11; i++) {
    if (*f[i] <= 0) throw JsError{"convolution dimensions must be positive"};
  }
  return g;
}

struct ConvFwd {
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward prim;
  dnnl::reorder wReorder;
  bool needReorder;
};
struct ConvBwdData {
  dnnl::convolution_backward_data::primitive_desc pd;
  dnnl::convolution_backward_data prim;
  dnnl::reorder wReorder;
  bool needReorder;
};
struct ConvBwdWeights {
  dnnl::convolution_backward_weights::primitive_desc pd;
  dnnl::convolution_backward_weights prim;
  dnnl::reorder wReorder;
  bool needReorder;
};

std::unordered_map<std::string, std::unique_ptr<ConvFwd>> fwdCache;
std::unordered_map<std::string, std::unique_ptr<ConvBwdData>> bwdDataCache;
std::unordered_map<std::string, std::unique_ptr<ConvBwdWeights>> bwdWeightsCache;

dnnl::convolution_forward::primitive_desc fwdPd(const ConvGeom& g) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return dnnl::convolution_forward::primitive_desc(g.fwdDesc(), attr, eng());
}

ConvFwd& getFwd(const ConvGeom& g) {
  auto& slot = fwdCache[g.key()];
  if (!slot) {
    auto pd = fwdPd(g);
    bool need = pd.weights_desc() != g.wei();
    dnnl::reorder r;
    if (need) r = dnnl::reorder(dnnl::reorder::primitive_desc(eng(), g.wei(), eng(), pd.weights_desc()));
    slot.reset(new ConvFwd{pd, dnnl::convolution_forward(pd), r, need});
  }
  return *slot;
}

ConvBwdData& getBwdData(const ConvGeom& g) {
  auto& slot = bwdDataCache[g.key()];
  if (!slot) {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::convolution_backward_data::desc d(dnnl::algorithm::convolution_direct, g.src(), g.wei(tag::any), g.dst(),
      {g.sh, g.sw}, {g.dh - 1, g.dw - 1}, {g.pt, g.pl}, {g.pb, g.pr});
    dnnl::convolution_backward_data::primitive_desc pd(d, attr, eng(), fwdPd(g));
    bool need = pd.weights_desc() != g.wei();
    dnnl::reorder r;
    if (need) r = dnnl::reorder(dnnl::reorder::primitive_desc(eng(), g.wei(), eng(), pd.weights_desc()));
    slot.reset(new ConvBwdData{pd, dnnl::convolution_backward_data(pd), r, need});
  }
  return *slot;
}

ConvBwdWeights& getBwdWeights(const ConvGeom& g) {
  auto& slot = bwdWeightsCache[g.key()];
  if (!slot) {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::convolution_backward_weights::desc d(dnnl::algorithm::convolution_direct, g.src(), g.wei(tag::any), g.dst(),
      {g.sh, g.sw}, {g.dh - 1, g.dw - 1}, {g.pt, g.pl}, {g.pb, g.pr});
    dnnl::convolution_backward_weights::primitive_desc pd(d, attr, eng(), fwdPd(g));
    bool need = pd.diff_weights_desc() != g.wei();
    dnnl::reorder r;
    if (need) r = dnnl::reorder(dnnl::reorder::primitive_desc(eng(), pd.diff_weights_desc(), eng(), g.wei()));
    slot.reset(new ConvBwdWeights{pd, dnnl::convolution_backward_weights(pd), r, need});
  }
  return *slot;
}

size_t sz(const ConvGeom& g, char which) {
  if (which == 'x') return size_t(g.n * g.ih * g.iw * g.ci);
  if (which == 'y') return size_t(g.n * g.oh * g.ow * g.co);
  return size_t(g.kh * g.kw * g.ci * g.co);
}

// The weights in the layout the primitive wants. Arguments `first`, `first + 1`: a cache Float32Array (or null) and
// whether it already holds this filter's reordered weights. With a cache the reorder happens once per filter array
// (the caller keys caches by the immutable tfjs array), else into the shared scratch buffer on every call.
memory reorderedWeights(Args& a, size_t first, bool needReorder, const memory::desc& md, dnnl::reorder& r,
  const ConvGeom& g, float* w) {
  memory wUser(g.wei(), eng(), w);
  if (!needReorder) return wUser;
  float* cache = a.f32OrNull(first, (md.get_size() + 3) / 4, "weights cache");
  if (cache == nullptr) {
    memory out(md, eng(), gWeights.get(md.get_size()));
    r.execute(strm(), wUser, out);
    return out;
  }
  memory out(md, eng(), cache);
  if (!a.flag(first + 1)) r.execute(strm(), wUser, out);
  return out;
}

// ---- input gradient of a stride-1 convolution as a forward convolution ------------------------------------------
// dx = conv(dy, W') with W'[i][j][o][c] = W[kh−1−i][kw−1−j][c][o] (the filter flipped in space, in/out channels
// swapped) and padding (k−1)·d − p on each side: the transposed convolution of stride 1 is a convolution. oneDNN 2.6
// runs its forward on brgconv, its input gradient on an older jit kernel that is slower for 64 channels (resnet34
// layer 1, 3×3, bs 16, warm, filter reordered once: 8.2 → 7.7 ms at 32×32, 26.8 → 23.2 ms at 56×56) and on par
// from 128 channels on (6.9 vs 6.9 ms at 16×16); so this path is taken for
// stride-1 k×k (k > 1) convolutions of ≤ 64 input and output channels (a fixed rule, not a timing: the same
// geometry always runs the same code, so runs stay bit-reproducible).
bool bwdDataAsForward(const ConvGeom& g) {
  if (g.sh != 1 || g.sw != 1 || g.kh * g.kw == 1 || g.ci > 64 || g.co > 64) return false;
  const memory::dim ah = (g.kh - 1) * g.dh, aw = (g.kw - 1) * g.dw;
  return g.pt >= 0 && g.pb >= 0 && g.pl >= 0 && g.pr >= 0 && g.pt <= ah && g.pb <= ah && g.pl <= aw && g.pr <= aw;
}

// The forward geometry that computes g's input gradient (see bwdDataAsForward).
ConvGeom flippedGeom(const ConvGeom& g) {
  const memory::dim ah = (g.kh - 1) * g.dh, aw = (g.kw - 1) * g.dw;
  return ConvGeom{g.n, g.oh, g.ow, g.co, g.ih, g.iw, g.ci, g.kh, g.kw, 1, 1, ah - g.pt, aw - g.pl, ah - g.pb, aw - g.pr, g.dh, g.dw};
}

// Floats of the flipped filter in the forward primitive's layout (at least the HWIO size, used when no reorder).
size_t flippedWeightsFloats(const ConvGeom& g) {
  ConvGeom f = flippedGeom(g);
  ConvFwd& c = getFwd(f);
  return c.needReorder ? (c.pd.weights_desc().get_size() + 3) / 4 : sz(f, 'w');
}

// Writes g's filter w (HWIO) flipped and transposed (see bwdDataAsForward) into `out`, in the layout of the forward
// primitive of flippedGeom(g).
void flipWeights(const ConvGeom& g, const float* w, float* out) {
  ConvGeom f = flippedGeom(g);
  ConvFwd& c = getFwd(f);
  std::vector<float> hwio(c.needReorder ? sz(g, 'w') : 0);
  float* t = c.needReorder ? hwio.data() : out;
  const memory::dim kh = g.kh, kw = g.kw, ci = g.ci, co = g.co;
  for (memory::dim i = 0; i < kh; i++) {
    for (memory::dim j = 0; j < kw; j++) {
      const float* src = w + ((kh - 1 - i) * kw + (kw - 1 - j)) * ci * co;  // [c][o]
      float* dst = t + (i * kw + j) * co * ci;                               // [o][c]
      for (memory::dim cc = 0; cc < ci; cc++) {
        for (memory::dim o = 0; o < co; o++) dst[o * ci + cc] = src[cc * co + o];
      }
    }
  }
  if (c.needReorder) {
    memory from(f.wei(), eng(), t), to(c.pd.weights_desc(), eng(), out);
    c.wReorder.execute(strm(), from, to);
    strm().wait();
  }
}

// convWeightsCacheSize(kind, ...geometry) -> floats of the reordered weights (kind 0 forward, 1 input gradient),
// 0 when the primitive takes HWIO as is.
napi_value ConvWeightsCacheSize(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 18);
    int64_t kind = a.i64(0);
    ConvGeom g = readGeom(a, 1);
    size_t bytes = 0;
    if (kind == 0) { ConvFwd& c = getFwd(g); bytes = c.needReorder ? c.pd.weights_desc().get_size() : 0; }
    else if (bwdDataAsForward(g)) bytes = flippedWeightsFloats(g) * 4;
    else { ConvBwdData& c = getBwdData(g); bytes = c.needReorder ? c.pd.weights_desc().get_size() : 0; }
    napi_value out;
    napi_create_double(env, double((bytes + 3) / 4), &out);
    return out;
  });
}

// convForward(x, w, y, ...geometry, cache|null, cacheValid)
napi_value ConvForward(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 22);
    ConvGeom g = readGeom(a, 3);
    float* x = a.f32(0, sz(g, 'x'), "x");
    float* w = a.f32(1, sz(g, 'w'), "filter");
    float* y = a.f32(2, sz(g, 'y'), "y");
    ConvFwd& c = getFwd(g);
    memory wUse = reorderedWeights(a, 20, c.needReorder, c.pd.weights_desc(), c.wReorder, g, w);
    c.prim.execute(strm(), {{DNNL_ARG_SRC, memory(g.src(), eng(), x)}, {DNNL_ARG_WEIGHTS, wUse},
      {DNNL_ARG_DST, memory(g.dst(), eng(), y)}, {DNNL_ARG_SCRATCHPAD, scratchpadFor(c.pd)}});
    strm().wait();
    return undef(env);
  });
}

// convBackwardData(dy, w, dx, ...geometry, cache|null, cacheValid)
napi_value ConvBackwardData(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 22);
    ConvGeom g = readGeom(a, 3);
    float* dy = a.f32(0, sz(g, 'y'), "dy");
    float* w = a.f32(1, sz(g, 'w'), "filter");
    float* dx = a.f32(2, sz(g, 'x'), "dx");
    if (bwdDataAsForward(g)) {
      ConvGeom f = flippedGeom(g);
      ConvFwd& c = getFwd(f);
      const size_t floats = flippedWeightsFloats(g);
      float* cache = a.f32OrNull(20, floats, "weights cache");
      std::vector<float> local(cache == nullptr ? floats : 0);
      float* wf = cache != nullptr ? cache : local.data();
      if (cache == nullptr || !a.flag(21)) flipWeights(g, w, wf);
      memory wUse = c.needReorder ? memory(c.pd.weights_desc(), eng(), wf) : memory(f.wei(), eng(), wf);
      c.prim.execute(strm(), {{DNNL_ARG_SRC, memory(f.src(), eng(), dy)}, {DNNL_ARG_WEIGHTS, wUse},
        {DNNL_ARG_DST, memory(f.dst(), eng(), dx)}, {DNNL_ARG_SCRATCHPAD, scratchpadFor(c.pd)}});
      strm().wait();
      return undef(env);
    }
    ConvBwdData& c = getBwdData(g);
    memory wUse = reorderedWeights(a, 20, c.needReorder, c.pd.weights_desc(), c.wReorder, g, w);
    c.prim.execute(strm(), {{DNNL_ARG_DIFF_DST, memory(g.dst(), eng(), dy)}, {DNNL_ARG_WEIGHTS, wUse},
      {DNNL_ARG_DIFF_SRC, memory(g.src(), eng(), dx)}, {DNNL_ARG_SCRATCHPAD, scratchpadFor(c.pd)}});
    strm().wait();
    return undef(env);
  });
}

// convBackwardWeights(x, dy, dw, ...geometry)
napi_value ConvBackwardWeights(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 20);
    ConvGeom g = readGeom(a, 3);
    float* x = a.f32(0, sz(g, 'x'), "x");
    float* dy = a.f32(1, sz(g, 'y'), "dy");
    float* dw = a.f32(2, sz(g, 'w'), "dw");
    ConvBwdWeights& c = getBwdWeights(g);
    memory dwUser(g.wei(), eng(), dw);
    memory dwUse = dwUser;
    if (c.needReorder) dwUse = memory(c.pd.diff_weights_desc(), eng(), gWeights.get(c.pd.diff_weights_desc().get_size()));
    c.prim.execute(strm(), {{DNNL_ARG_SRC, memory(g.src(), eng(), x)}, {DNNL_ARG_DIFF_DST, memory(g.dst(), eng(), dy)},
      {DNNL_ARG_DIFF_WEIGHTS, dwUse}, {DNNL_ARG_SCRATCHPAD, scratchpadFor(c.pd)}});
    if (c.needReorder) c.wReorder.execute(strm(), dwUse, dwUser);
    strm().wait();
    return undef(env);
  });
}

// convInfo(kind, ...geometry) -> implementation name (for tests, docs and the bench)
napi_value ConvImpl(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 18);
    int64_t kind = a.i64(0);
    ConvGeom g = readGeom(a, 1);
    std::string s = kind == 0 ? getFwd(g).pd.impl_info_str()
      : kind == 1 ? (bwdDataAsForward(g) ? std::string("forward ") + getFwd(flippedGeom(g)).pd.impl_info_str() + " (flipped filter)"
        : getBwdData(g).pd.impl_info_str()) : getBwdWeights(g).pd.impl_info_str();
    napi_value out;
    napi_create_string_utf8(env, s.c_str(), s.size(), &out);
    return out;
  });
}

// ---- max pooling ------------------------------------------------------------------------------------------------
struct PoolGeom {
  memory::dim n, ih, iw, c, oh, ow, kh, kw, sh, sw, pt, pl, pb, pr;
  memory::desc src() const { return memory::desc({n, c, ih, iw}, dt::f32, tag::nhwc); }
  memory::desc dst() const { return memory::desc({n, c, oh, ow}, dt::f32, tag::nhwc); }
  dnnl::pooling_forward::desc fwd(dnnl::prop_kind k) const {
    return dnnl::pooling_forward::desc(k, dnnl::algorithm::pooling_max, src(), dst(), {sh, sw}, {kh, kw}, {pt, pl}, {pb, pr});
  }
};

PoolGeom readPool(Args& a, size_t first) {
  PoolGeom g;
  memory::dim* f[] = {&g.n, &g.ih, &g.iw, &g.c, &g.oh, &g.ow, &g.kh, &g.kw, &g.sh, &g.sw, &g.pt, &g.pl, &g.pb, &g.pr};
  for (size_t i = 0; i < 14; i++) *f[i] = a.i64(first + i);
  for (size_t i = 0; i < 10; i++) {
    if (*f[i] <= 0) throw JsError{"pooling dimensions must be positive"};
  }
  return g;
}

// maxPoolWorkspaceSize(...geometry) -> bytes of the arg-max workspace the training forward writes.
napi_value MaxPoolWorkspaceSize(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 14);
    PoolGeom g = readPool(a, 0);
    dnnl::pooling_forward::primitive_desc pd(g.fwd(dnnl::prop_kind::forward_training), eng());
    napi_value out;
    napi_create_double(env, double(pd.workspace_desc().get_size()), &out);
    return out;
  });
}

// maxPoolForward(x, y, workspace|null, ...geometry): with a workspace (maxPoolWorkspaceSize bytes) the training
// forward, which also records each window's arg-max there for maxPoolBackward; else the inference forward.
napi_value MaxPoolForward(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 17);
    PoolGeom g = readPool(a, 3);
    float* x = a.f32(0, size_t(g.n * g.ih * g.iw * g.c), "x");
    float* y = a.f32(1, size_t(g.n * g.oh * g.ow * g.c), "y");
    dnnl::pooling_forward::primitive_desc tpd(g.fwd(dnnl::prop_kind::forward_training), eng());
    uint8_t* ws = a.u8OrNull(2, tpd.workspace_desc().get_size(), "workspace");
    if (ws != nullptr) {
      dnnl::pooling_forward(tpd).execute(strm(), {{DNNL_ARG_SRC, memory(g.src(), eng(), x)},
        {DNNL_ARG_DST, memory(g.dst(), eng(), y)}, {DNNL_ARG_WORKSPACE, memory(tpd.workspace_desc(), eng(), ws)}});
    } else {
      dnnl::pooling_forward::primitive_desc pd(g.fwd(dnnl::prop_kind::forward_inference), eng());
      dnnl::pooling_forward(pd).execute(strm(), {{DNNL_ARG_SRC, memory(g.src(), eng(), x)}, {DNNL_ARG_DST, memory(g.dst(), eng(), y)}});
    }
    strm().wait();
    return undef(env);
  });
}

// maxPoolBackward(x, dy, dx, workspace|null, ...geometry): scatters dy to each window's arg-max, read from the
// workspace of the training forward when given, else found by running that forward again on x.
napi_value MaxPoolBackward(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 18);
    PoolGeom g = readPool(a, 4);
    float* x = a.f32(0, size_t(g.n * g.ih * g.iw * g.c), "x");
    float* dy = a.f32(1, size_t(g.n * g.oh * g.ow * g.c), "dy");
    float* dx = a.f32(2, size_t(g.n * g.ih * g.iw * g.c), "dx");
    dnnl::pooling_forward::primitive_desc fpd(g.fwd(dnnl::prop_kind::forward_training), eng());
    const size_t wsBytes = fpd.workspace_desc().get_size();
    uint8_t* given = a.u8OrNull(3, wsBytes, "workspace");
    memory ws(fpd.workspace_desc(), eng(), given != nullptr ? static_cast<void*>(given) : gWorkspace.get(wsBytes));
    if (given == nullptr) {
      float* y = static_cast<float*>(gPoolOut.get(size_t(g.n * g.oh * g.ow * g.c) * 4));
      dnnl::pooling_forward(fpd).execute(strm(), {{DNNL_ARG_SRC, memory(g.src(), eng(), x)},
        {DNNL_ARG_DST, memory(g.dst(), eng(), y)}, {DNNL_ARG_WORKSPACE, ws}});
    }
    dnnl::pooling_backward::desc bd(dnnl::algorithm::pooling_max, g.src(), g.dst(), {g.sh, g.sw}, {g.kh, g.kw},
      {g.pt, g.pl}, {g.pb, g.pr});
    dnnl::pooling_backward::primitive_desc bpd(bd, eng(), fpd);
    dnnl::pooling_backward(bpd).execute(strm(), {{DNNL_ARG_DIFF_DST, memory(g.dst(), eng(), dy)},
      {DNNL_ARG_DIFF_SRC, memory(g.src(), eng(), dx)}, {DNNL_ARG_WORKSPACE, ws}});
    strm().wait();
    return undef(env);
  });
}

// ---- matrix product ---------------------------------------------------------------------------------------------
// batchMatMul(a, b, c, batch, m, n, k, transA, transB, batchA, batchB): C[i] = op(A[i])·op(B[i]), row-major;
// batchA/batchB = 1 when the operand has a batch dimension, 0 when it is shared (broadcast).
napi_value BatchMatMul(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 11);
    int64_t batch = a.i64(3), m = a.i64(4), n = a.i64(5), k = a.i64(6);
    bool ta = a.flag(7), tb = a.flag(8);
    int64_t sa = a.i64(9) ? m * k : 0, sb = a.i64(10) ? k * n : 0;
    float* A = a.f32(0, size_t((sa ? batch : 1) * m * k), "a");
    float* B = a.f32(1, size_t((sb ? batch : 1) * k * n), "b");
    float* C = a.f32(2, size_t(batch * m * n), "c");
    // oneDNN 2.6's sgemm kernel corrupts the heap when a signal lands during the call (found with node --cpu-prof,
    // whose sampler sends SIGPROF every millisecond: "corrupted size vs. prev_size" in the sgemm's own free). The
    // asynchronous signals are held until the call returns, then delivered.
    sigset_t hold, previous;
    sigfillset(&hold);
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP}) sigdelset(&hold, sig);
    pthread_sigmask(SIG_BLOCK, &hold, &previous);
    struct Restore {
      sigset_t* s;
      ~Restore() { pthread_sigmask(SIG_SETMASK, s, nullptr); }
    } restore{&previous};
    for (int64_t i = 0; i < batch; i++) {
      dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, 1.f, A + i * sa, ta ? m : k,
        B + i * sb, tb ? k : n, 0.f, C + i * m * n, n);
      if (st != dnnl_success) throw JsError{"oneDNN: dnnl_sgemm failed (status " + std::to_string(st) + ")"};
    }
    return undef(env);
  });
}

// ---- fused training-mode BatchNorm (+ residual, + ReLU) ---------------------------------------------------------
// Rows per float32 partial sum of the statistics (see BatchNormForward).
constexpr int64_t kBnBlock = 32;
// batchNormForward(x, gamma, beta, residual|null, y, mean, variance, p, c, eps, relu)
napi_value BatchNormForward(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 11);
    const int64_t p = a.i64(7), c = a.i64(8);
    const double eps = a.num(9);
    const bool relu = a.flag(10);
    const size_t total = size_t(p * c);
    const float* x = a.f32(0, total, "x");
    const float* gamma = a.f32(1, size_t(c), "gamma");
    const float* beta = a.f32(2, size_t(c), "beta");
    const float* r = a.f32OrNull(3, total, "residual");
    float* y = a.f32(4, total, "y");
    float* meanOut = a.f32(5, size_t(c), "mean");
    float* varOut = a.f32(6, size_t(c), "variance");
    if (p < 2) throw JsError{"training-mode BatchNorm needs more than 1 value per channel"};
    // Shifted sums (Chan, Golub & LeVeque 1983), shift = first row: float32 partial sums over blocks of
    // kBnBlock rows (vectorised 8–16 wide), added into float64 totals per block, so the rounding error stays that of
    // a kBnBlock-term float sum (≈ 1e-6 relative) whatever the batch and image size.
    std::vector<double> shift(x, x + c), s1(c, 0.0), s2(c, 0.0);
    std::vector<float> shiftF(x, x + c), f1(c), f2(c);
    for (int64_t o0 = 0; o0 < p; o0 += kBnBlock) {
      const int64_t o1 = std::min(p, o0 + kBnBlock);
      float* __restrict a1 = f1.data();
      float* __restrict a2 = f2.data();
      const float* __restrict sh = shiftF.data();
      std::fill(f1.begin(), f1.end(), 0.f);
      std::fill(f2.begin(), f2.end(), 0.f);
      for (int64_t o = o0; o < o1; o++) {
        const float* __restrict row = x + o * c;
        for (int64_t k = 0; k < c; k++) {
          const float d = row[k] - sh[k];
          a1[k] += d;
          a2[k] += d * d;
        }
      }
      for (int64_t k = 0; k < c; k++) {
        s1[k] += double(a1[k]);
        s2[k] += double(a2[k]);
      }
    }
    std::vector<float> centre(c), scale(c);
    for (int64_t k = 0; k < c; k++) {
      const double m = s1[k] / double(p);
      const double mean = shift[k] + m;
      const double var = std::max(0.0, s2[k] / double(p) - m * m);
      meanOut[k] = float(mean);
      varOut[k] = float(var);
      centre[k] = float(mean);
      scale[k] = float(double(gamma[k]) / std::sqrt(var + eps));
    }
    for (int64_t o = 0; o < p; o++) {
      const float* xr = x + o * c;
      float* yr = y + o * c;
      const float* rr = r ? r + o * c : nullptr;
      for (int64_t k = 0; k < c; k++) {
        float v = (xr[k] - centre[k]) * scale[k] + beta[k];
        if (rr) v += rr[k];
        yr[k] = relu ? (v > 0.f ? v : 0.f) : v;
      }
    }
    return undef(env);
  });
}

// batchNormBackward(x, y, dy, gamma, mean, variance, dx, dgamma, dbeta, dresidual|null, p, c, eps, relu)
napi_value BatchNormBackward(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 14);
    const int64_t p = a.i64(10), c = a.i64(11);
    const double eps = a.num(12);
    const bool relu = a.flag(13);
    const size_t total = size_t(p * c);
    const float* x = a.f32(0, total, "x");
    const float* y = a.f32(1, total, "y");
    const float* dy = a.f32(2, total, "dy");
    const float* gamma = a.f32(3, size_t(c), "gamma");
    const float* mean = a.f32(4, size_t(c), "mean");
    const float* var = a.f32(5, size_t(c), "variance");
    float* dx = a.f32(6, total, "dx");
    float* dg = a.f32(7, size_t(c), "dgamma");
    float* db = a.f32(8, size_t(c), "dbeta");
    float* dr = a.f32OrNull(9, total, "dresidual");
    // dy' = dy·[y > 0] with ReLU; written to dresidual when there is one (it is dy'), else used on the fly.
    // Float32 partial sums per block of kBnBlock rows into float64 totals, as in the forward.
    std::vector<double> sumDy(c, 0.0), sumDyC(c, 0.0);
    std::vector<float> f1(c), f2(c);
    for (int64_t o0 = 0; o0 < p; o0 += kBnBlock) {
      const int64_t o1 = std::min(p, o0 + kBnBlock);
      float* __restrict a1 = f1.data();
      float* __restrict a2 = f2.data();
      std::fill(f1.begin(), f1.end(), 0.f);
      std::fill(f2.begin(), f2.end(), 0.f);
      for (int64_t o = o0; o < o1; o++) {
        const float* __restrict xr = x + o * c;
        const float* __restrict yr = y + o * c;
        const float* __restrict dyr = dy + o * c;
        const float* __restrict mr = mean;
        if (dr != nullptr) {
          float* __restrict drr = dr + o * c;
          for (int64_t k = 0; k < c; k++) {
            const float d = relu ? (yr[k] > 0.f ? dyr[k] : 0.f) : dyr[k];
            drr[k] = d;
            a1[k] += d;
            a2[k] += d * (xr[k] - mr[k]);
          }
        } else {
          for (int64_t k = 0; k < c; k++) {
            const float d = relu ? (yr[k] > 0.f ? dyr[k] : 0.f) : dyr[k];
            a1[k] += d;
            a2[k] += d * (xr[k] - mr[k]);
          }
        }
      }
      for (int64_t k = 0; k < c; k++) {
        sumDy[k] += double(f1[k]);
        sumDyC[k] += double(f2[k]);
      }
    }
    std::vector<float> ca(c), cb(c), cc(c);
    for (int64_t k = 0; k < c; k++) {
      const double is = 1.0 / std::sqrt(double(var[k]) + eps);
      const double dgamma = sumDyC[k] * is;
      dg[k] = float(dgamma);
      db[k] = float(sumDy[k]);
      ca[k] = float(gamma[k] * is);
      cb[k] = float(-gamma[k] * is * is * dgamma / double(p));
      cc[k] = float(-gamma[k] * is * sumDy[k] / double(p));
    }
    const float* __restrict pa = ca.data();
    const float* __restrict pb = cb.data();
    const float* __restrict pc = cc.data();
    for (int64_t o = 0; o < p; o++) {
      const float* __restrict xr = x + o * c;
      const float* __restrict mr = mean;
      float* __restrict dxr = dx + o * c;
      if (dr != nullptr) {  // the masked dy is already there: two reads instead of three
        const float* __restrict drr = dr + o * c;
        for (int64_t k = 0; k < c; k++) dxr[k] = pa[k] * drr[k] + pb[k] * (xr[k] - mr[k]) + pc[k];
      } else {
        const float* __restrict yr = y + o * c;
        const float* __restrict dyr = dy + o * c;
        for (int64_t k = 0; k < c; k++) {
          const float d = relu ? (yr[k] > 0.f ? dyr[k] : 0.f) : dyr[k];
          dxr[k] = pa[k] * d + pb[k] * (xr[k] - mr[k]) + pc[k];
        }
      }
    }
    return undef(env);
  });
}

// ---- element-wise arithmetic (the optimizer's and the loss's glue; memory-bound single passes) -------------------
// The element-wise binary ops by their code (0 add, 1 sub, 2 mul, 3 div, 4 maximum, 5 minimum): calls run(f) with the
// op's float function, so the broadcast loops (binaryLoop, stridedLoop) share one table of ops.
template <typename Run>
void withBinaryOp(int64_t op, Run run) {
  switch (op) {
    case 0: run([](float u, float v) { return u + v; }); break;
    case 1: run([](float u, float v) { return u - v; }); break;
    case 2: run([](float u, float v) { return u * v; }); break;
    case 3: run([](float u, float v) { return u / v; }); break;
    // NaN-propagating, as tfjs's cpu Maximum/Minimum.
    case 4: run([](float u, float v) { return (u != u || v != v) ? NAN : (u > v ? u : v); }); break;
    case 5: run([](float u, float v) { return (u != u || v != v) ? NAN : (u < v ? u : v); }); break;
    default: throw JsError{"unknown binary op " + std::to_string(op)};
  }
}

// binary(op, a, b, out, n, na, nb): out[i] = a[i mod na] op b[i mod nb], where each of na, nb is n (a full operand),
// 1 (a scalar) or the size of the output's trailing dimensions (a row broadcast, e.g. a bias [C] over [N, C]).
// op: 0 add, 1 sub, 2 mul, 3 div, 4 max, 5 min.
template <typename F>
void binaryLoop(const float* a, const float* b, float* out, int64_t n, int64_t na, int64_t nb, F f) {
  if (na == n && nb == n) {
    for (int64_t i = 0; i < n; i++) out[i] = f(a[i], b[i]);
  } else if (na == n && nb == 1) {
    const float s = b[0];
    for (int64_t i = 0; i < n; i++) out[i] = f(a[i], s);
  } else if (na == 1 && nb == n) {
    const float s = a[0];
    for (int64_t i = 0; i < n; i++) out[i] = f(s, b[i]);
  } else {
    // Row broadcast: the shorter operand repeats every m = min(na, nb) elements (m divides n, checked by the caller).
    const int64_t m = na < nb ? na : nb;
    for (int64_t o = 0; o < n; o += m) {
      const float* ar = na == n ? a + o : a;
      const float* br = nb == n ? b + o : b;
      if (na == 1) { for (int64_t j = 0; j < m; j++) out[o + j] = f(a[0], br[j]); }
      else if (nb == 1) { for (int64_t j = 0; j < m; j++) out[o + j] = f(ar[j], b[0]); }
      else { for (int64_t j = 0; j < m; j++) out[o + j] = f(ar[j], br[j]); }
    }
  }
}

napi_value Binary(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 7);
    const int64_t op = a.i64(0), n = a.i64(4), as = a.i64(5), bs = a.i64(6);
    if (as < 1 || bs < 1 || n % as != 0 || n % bs != 0 || (as != n && bs != n && as != 1 && bs != 1)) {
      throw JsError{"binary: operand sizes must divide the output size, one of them full"};
    }
    const float* x = a.f32(1, size_t(as), "a");
    const float* y = a.f32(2, size_t(bs), "b");
    float* out = a.f32(3, size_t(n), "out");
    withBinaryOp(op, [&](auto f) { binaryLoop(x, y, out, n, as, bs, f); });
    return undef(env);
  });
}

// unary(op, x, out, n): op 0 sqrt, 1 square, 2 neg, 3 rsqrt, 4 abs.
napi_value Unary(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 4);
    const int64_t op = a.i64(0), n = a.i64(3);
    const float* x = a.f32(1, size_t(n), "x");
    float* out = a.f32(2, size_t(n), "out");
    switch (op) {
      case 0: for (int64_t i = 0; i < n; i++) out[i] = std::sqrt(x[i]); break;
      case 1: for (int64_t i = 0; i < n; i++) out[i] = x[i] * x[i]; break;
      case 2: for (int64_t i = 0; i < n; i++) out[i] = -x[i]; break;
      case 3: for (int64_t i = 0; i < n; i++) out[i] = 1.f / std::sqrt(x[i]); break;
      case 4: for (int64_t i = 0; i < n; i++) out[i] = std::fabs(x[i]); break;
      default: throw JsError{"unknown unary op " + std::to_string(op)};
    }
    return undef(env);
  });
}

// binaryStrided(op, a, b, out, d0, d1, d2, d3, as0..as3, bs0..bs3): out[i0,i1,i2,i3] (row-major over d0..d3) =
// a[Σ ik·ask] op b[Σ ik·bsk]: any broadcast, the caller having merged adjacent dimensions to at most four (a
// stride of 0 repeats an operand along that dimension). op as for binary.
template <typename T, typename F>
void stridedLoop(const float* a, const float* b, T* out, const int64_t* d, const int64_t* as, const int64_t* bs, F f) {
  int64_t o = 0;
  for (int64_t i0 = 0; i0 < d[0]; i0++) {
    for (int64_t i1 = 0; i1 < d[1]; i1++) {
      for (int64_t i2 = 0; i2 < d[2]; i2++) {
        const float* ar = a + i0 * as[0] + i1 * as[1] + i2 * as[2];
        const float* br = b + i0 * bs[0] + i1 * bs[1] + i2 * bs[2];
        T* orow = out + o;
        const int64_t n = d[3], sa = as[3], sb = bs[3];
        if (sa == 1 && sb == 1) { for (int64_t j = 0; j < n; j++) orow[j] = f(ar[j], br[j]); }
        else if (sa == 0 && sb == 1) { const float u = ar[0]; for (int64_t j = 0; j < n; j++) orow[j] = f(u, br[j]); }
        else if (sa == 1 && sb == 0) { const float v = br[0]; for (int64_t j = 0; j < n; j++) orow[j] = f(ar[j], v); }
        else { for (int64_t j = 0; j < n; j++) orow[j] = f(ar[j * sa], br[j * sb]); }
        o += n;
      }
    }
  }
}

// Reads the four dimensions and two stride sets of binaryStrided/compareStrided (arguments 4..15); returns the
// output size and checks that both operands hold the elements the strides reach.
int64_t readStrides(Args& a, int64_t* d, int64_t* as, int64_t* bs, int64_t& aLast, int64_t& bLast) {
  int64_t n = 1;
  aLast = 0;
  bLast = 0;
  for (int k = 0; k < 4; k++) {
    d[k] = a.i64(4 + k);
    as[k] = a.i64(8 + k);
    bs[k] = a.i64(12 + k);
    if (d[k] < 1 || as[k] < 0 || bs[k] < 0) throw JsError{"strided op: dimensions must be ≥ 1, strides ≥ 0"};
    n *= d[k];
    aLast += (d[k] - 1) * as[k];
    bLast += (d[k] - 1) * bs[k];
  }
  return n;
}

// compareStrided(op, a, b, out: Uint8Array, dims, strides as binaryStrided): out = (a op b) ? 1 : 0, tfjs's bool.
// op: 0 equal, 1 not equal, 2 greater, 3 greater or equal, 4 less, 5 less or equal (IEEE: NaN compares false,
// not-equal true, as JavaScript's operators in tfjs's cpu kernels).
napi_value CompareStrided(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 16);
    const int64_t op = a.i64(0);
    int64_t d[4], as[4], bs[4], aLast, bLast;
    const int64_t n = readStrides(a, d, as, bs, aLast, bLast);
    const float* x = a.f32(1, size_t(aLast + 1), "a");
    const float* y = a.f32(2, size_t(bLast + 1), "b");
    bool is = false;
    napi_is_typedarray(env, a.v[3], &is);
    if (!is) throw JsError{"out must be a Uint8Array"};
    napi_typedarray_type type;
    size_t len = 0;
    void* data = nullptr;
    napi_get_typedarray_info(env, a.v[3], &type, &len, &data, nullptr, nullptr);
    if (type != napi_uint8_array || len < size_t(n)) throw JsError{"out must be a Uint8Array of the output size"};
    uint8_t* out = static_cast<uint8_t*>(data);
    switch (op) {
      case 0: stridedLoop(x, y, out, d, as, bs, [](float u, float v) { return uint8_t(u == v); }); break;
      case 1: stridedLoop(x, y, out, d, as, bs, [](float u, float v) { return uint8_t(u != v); }); break;
      case 2: stridedLoop(x, y, out, d, as, bs, [](float u, float v) { return uint8_t(u > v); }); break;
      case 3: stridedLoop(x, y, out, d, as, bs, [](float u, float v) { return uint8_t(u >= v); }); break;
      case 4: stridedLoop(x, y, out, d, as, bs, [](float u, float v) { return uint8_t(u < v); }); break;
      case 5: stridedLoop(x, y, out, d, as, bs, [](float u, float v) { return uint8_t(u <= v); }); break;
      default: throw JsError{"unknown comparison " + std::to_string(op)};
    }
    return undef(env);
  });
}

napi_value BinaryStrided(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 16);
    const int64_t op = a.i64(0);
    int64_t d[4], as[4], bs[4], aLast, bLast;
    const int64_t n = readStrides(a, d, as, bs, aLast, bLast);
    const float* x = a.f32(1, size_t(aLast + 1), "a");
    const float* y = a.f32(2, size_t(bLast + 1), "b");
    float* out = a.f32(3, size_t(n), "out");
    withBinaryOp(op, [&](auto f) { stridedLoop(x, y, out, d, as, bs, f); });
    return undef(env);
  });
}

// reduce(op, x, out, outer, r, inner): out[o, i] = reduction over k < r of x[o, k, i] (x viewed as [outer, r, inner]).
// op: 0 sum, 1 mean, 2 max. Sums in float64 (as tfjs's cpu kernels, whose accumulators are JavaScript numbers),
// rounded once; mean = sum / r; max propagates NaN as tfjs's cpu Max.
napi_value Reduce(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 6);
    const int64_t op = a.i64(0), outer = a.i64(3), r = a.i64(4), inner = a.i64(5);
    if (outer < 1 || r < 1 || inner < 1 || op < 0 || op > 2) throw JsError{"reduce: sizes must be ≥ 1, op 0..2"};
    const float* x = a.f32(1, size_t(outer * r * inner), "x");
    float* out = a.f32(2, size_t(outer * inner), "out");
    std::vector<double> acc(static_cast<size_t>(inner));
    for (int64_t o = 0; o < outer; o++) {
      const float* xo = x + o * r * inner;
      float* oo = out + o * inner;
      if (op == 2) {
        for (int64_t i = 0; i < inner; i++) oo[i] = xo[i];
        for (int64_t k = 1; k < r; k++) {
          const float* row = xo + k * inner;
          for (int64_t i = 0; i < inner; i++) {
            const float v = row[i];
            if (v != v || v > oo[i]) oo[i] = v;
          }
        }
        continue;
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t k = 0; k < r; k++) {
        const float* row = xo + k * inner;
        for (int64_t i = 0; i < inner; i++) acc[i] += double(row[i]);
      }
      for (int64_t i = 0; i < inner; i++) oo[i] = float(op == 1 ? acc[i] / double(r) : acc[i]);
    }
    return undef(env);
  });
}

// ---- in-place AdamW ---------------------------------------------------------------------------------------------
// adamW(p, g, m, v, n, beta1, beta2, √bc2, eps, 1−lr·wd, lr/bc1): one pass over n values, overwriting p, m and v:
//   m ← m·β1 + g·(1−β1);  v ← v·β2 + g²·(1−β2);  p ← p·(1−lr·wd) − (m / (√v/√bc2 + eps))·(lr/bc1)
// in float32 with the operation order and roundings of the tfjs ops of learner/adamw.ts (each scalar rounded to
// float32 as a tfjs scalar tensor is; no FMA contraction: the addon is compiled with -ffp-contract=off), so both give
// the same values (tested against tfjs on the cpu backend). Each element is read before it is written.
napi_value AdamW(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 11);
    const int64_t n = a.i64(4);
    float* p = a.f32(0, size_t(n), "p");
    const float* g = a.f32(1, size_t(n), "g");
    float* m = a.f32(2, size_t(n), "m");
    float* v = a.f32(3, size_t(n), "v");
    const double beta1 = a.num(5), beta2 = a.num(6);
    const float b1 = float(beta1), c1 = float(1 - beta1), b2 = float(beta2), c2 = float(1 - beta2);
    const float sbc2 = float(a.num(7)), eps = float(a.num(8)), decay = float(a.num(9)), k = float(a.num(10));
    int64_t i = 0;
#if defined(__AVX512F__)
    // The same float32 operations, 16 at a time (mul/add/sqrt/div as separate, correctly rounded instructions: the
    // same bits as the scalar loop below). Ordinary stores: the lines were just read into the cache, and streaming
    // stores to cached lines cost more than the write-back (resnet34's 21.8 M values, process CPU, min of 9: 66–68 ms
    // with streaming stores, 30–31 with these).
    const __m512 vb1 = _mm512_set1_ps(b1), vc1 = _mm512_set1_ps(c1), vb2 = _mm512_set1_ps(b2), vc2 = _mm512_set1_ps(c2);
    const __m512 vs = _mm512_set1_ps(sbc2), ve = _mm512_set1_ps(eps), vd = _mm512_set1_ps(decay), vk = _mm512_set1_ps(k);
    for (; i + 16 <= n; i += 16) {
      const __m512 gi = _mm512_loadu_ps(g + i);
      const __m512 mn = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(m + i), vb1), _mm512_mul_ps(gi, vc1));
      const __m512 vn = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(v + i), vb2), _mm512_mul_ps(_mm512_mul_ps(gi, gi), vc2));
      const __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vn), vs), ve);
      const __m512 pn = _mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(p + i), vd), _mm512_mul_ps(_mm512_div_ps(mn, denom), vk));
      _mm512_storeu_ps(p + i, pn);
      _mm512_storeu_ps(m + i, mn);
      _mm512_storeu_ps(v + i, vn);
    }
#endif
    for (; i < n; i++) {
      const float gi = g[i];
      const float mn = m[i] * b1 + gi * c1;
      const float vn = v[i] * b2 + (gi * gi) * c2;
      const float denom = std::sqrt(vn) / sbc2 + eps;
      p[i] = p[i] * decay - (mn / denom) * k;
      m[i] = mn;
      v[i] = vn;
    }
    return undef(env);
  });
}

// ---- setup ------------------------------------------------------------------------------------------------------
// init(threads, retainHeap) -> { version: "2.6.3", isa, threads, retainHeap }
// retainHeap: every kernel output is a fresh zero-filled ArrayBuffer (tfjs's cpu storage), ~1–3 GB per ResNet34
// step; with glibc's defaults most are fresh mmaps whose pages fault in one by one. Arrays up to 32 MiB (glibc's
// maximum) are then served from the heap, which keeps up to 1 GiB of freed memory for reuse instead of returning it.
napi_value Init(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 2);
    int64_t threads = a.i64(0);
    if (threads < 1) throw JsError{"threads must be ≥ 1"};
    const bool retain = a.flag(1);
    if (retain) {
      mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
      mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
      mallopt(M_TOP_PAD, 64 * 1024 * 1024);
    }
    omp_set_num_threads(int(threads));
    (void)eng();
    const dnnl_version_t* v = dnnl_version();
    std::string version = std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
    static const char* isaNames[] = {"all", "sse41", "avx", "avx2", "avx512_mic", "avx512_mic_4ops", "avx512_core",
      "avx512_core_vnni", "avx512_core_bf16", "avx512_core_amx", "avx2_vnni"};
    std::string isa;
    switch (dnnl::get_effective_cpu_isa()) {
      case dnnl::cpu_isa::sse41: isa = "sse41"; break;
      case dnnl::cpu_isa::avx: isa = "avx"; break;
      case dnnl::cpu_isa::avx2: isa = "avx2"; break;
      case dnnl::cpu_isa::avx512_core: isa = "avx512_core"; break;
      case dnnl::cpu_isa::avx512_core_vnni: isa = "avx512_core_vnni"; break;
      case dnnl::cpu_isa::avx512_core_bf16: isa = "avx512_core_bf16"; break;
      case dnnl::cpu_isa::avx512_core_amx: isa = "avx512_core_amx"; break;
      default: isa = "other";
    }
    (void)isaNames;
    napi_value out, vs, is, th;
    napi_create_object(env, &out);
    napi_create_string_utf8(env, version.c_str(), version.size(), &vs);
    napi_create_string_utf8(env, isa.c_str(), isa.size(), &is);
    napi_create_int32(env, omp_get_max_threads(), &th);
    napi_set_named_property(env, out, "version", vs);
    napi_set_named_property(env, out, "isa", is);
    napi_set_named_property(env, out, "threads", th);
    napi_value rh;
    napi_get_boolean(env, retain, &rh);
    napi_set_named_property(env, out, "retainHeap", rh);
    return out;
  });
}

// releaseCaches(): drops cached primitives and scratch buffers (tests, backend dispose).
napi_value ReleaseCaches(napi_env env, napi_callback_info) {
  fwdCache.clear();
  bwdDataCache.clear();
  bwdWeightsCache.clear();
  std::vector<char>().swap(gWeights.buf);
  std::vector<char>().swap(gPad.buf);
  std::vector<char>().swap(gWorkspace.buf);
  std::vector<char>().swap(gPoolOut.buf);
  return undef(env);
}

napi_value Register(napi_env env, napi_value exports) {
  const std::pair<const char*, napi_callback> fns[] = {
    {"init", Init}, {"convForward", ConvForward}, {"convBackwardData", ConvBackwardData},
    {"convBackwardWeights", ConvBackwardWeights}, {"convImpl", ConvImpl}, {"convWeightsCacheSize", ConvWeightsCacheSize}, {"maxPoolForward", MaxPoolForward}, {"maxPoolWorkspaceSize", MaxPoolWorkspaceSize},
    {"maxPoolBackward", MaxPoolBackward}, {"batchMatMul", BatchMatMul}, {"batchNormForward", BatchNormForward},
    {"batchNormBackward", BatchNormBackward}, {"releaseCaches", ReleaseCaches}, {"binary", Binary}, {"unary", Unary}, {"adamW", AdamW},
    {"binaryStrided", BinaryStrided}, {"compareStrided", CompareStrided}, {"reduce", Reduce},
  };
  for (const auto& [name, fn] : fns) {
    napi_value f;
    napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, nullptr, &f);
    napi_set_named_property(env, exports, name, f);
  }
#ifdef PETS_SOURCE_HASH
  // The stamp of the sources this was built from (scripts/build-native.mjs): the loader refuses a stale addon.
  napi_value stamp;
  napi_create_string_utf8(env, PETS_SOURCE_HASH, NAPI_AUTO_LENGTH, &stamp);
  napi_set_named_property(env, exports, "sourceHash", stamp);
#endif
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Register)
