// Test probe of native/napi_args.h (built by napi-args.test.ts into a temporary folder; not part of the product):
// two C++ types handed to JavaScript as tagged externals, one untagged external, and the readers, so the test can
// pass one type's handle where the other's is read, which the product's modules (one handle type today) cannot.
#include <node_api.h>

#include <utility>

#include "../../../native/napi_args.h"

namespace {

using pets_napi::Args;
using pets_napi::JsError;

struct Fig {
  static constexpr pets_napi::HandleKind kHandle{{0x2d6a9e0f71c4b853ULL, 0xc13f5a0b8e2d7694ULL}, "fig handle"};
  double value;
};
struct Pear {
  static constexpr pets_napi::HandleKind kHandle{{0x7b05e3c9a6128df4ULL, 0x94e8d1276c3fa0b5ULL}, "pear handle"};
  double value;
};

template <typename T>
void destroy(napi_env, void* data, void*) { delete static_cast<T*>(data); }

template <typename F>
napi_value guarded(napi_env env, F&& f) {
  try {
    return f();
  } catch (const JsError& e) {
    pets_napi::throwAs(env, "ERR_PROBE", e);
  }
  return nullptr;
}

napi_value number(napi_env env, double d) {
  napi_value out;
  napi_create_double(env, d, &out);
  return out;
}

template <typename T>
napi_value Make(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 1);
    return pets_napi::makeExternal(env, new T{a.num(0, "value")}, destroy<T>);
  });
}

template <typename T>
napi_value Read(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 1);
    return number(env, a.external<T>(0, "handle")->value);
  });
}

// An external with no tag (as an addon that does not tag its handles makes them).
napi_value MakeUntagged(napi_env env, napi_callback_info) {
  napi_value out;
  napi_create_external(env, new Fig{1}, destroy<Fig>, nullptr, &out);
  return out;
}

napi_value I64(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 1);
    return number(env, double(a.i64(0, "count")));
  });
}

napi_value Flag(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, 1);
    napi_value out;
    napi_get_boolean(env, a.flag(0, "enabled"), &out);
    return out;
  });
}

napi_value Register(napi_env env, napi_value exports) {
  const std::pair<const char*, napi_callback> fns[] = {{"makeFig", Make<Fig>}, {"makePear", Make<Pear>},
    {"readFig", Read<Fig>}, {"readPear", Read<Pear>}, {"makeUntagged", MakeUntagged}, {"i64", I64}, {"flag", Flag}};
  for (const auto& [name, fn] : fns) {
    napi_value f;
    napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, nullptr, &f);
    napi_set_named_property(env, exports, name, f);
  }
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Register)
