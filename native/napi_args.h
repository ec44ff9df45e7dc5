// pets-trainer N-API argument reader shared by the native modules (pets_dnnl.cc, pets_shm.cc): reads a call's
// arguments with typed checks and throws JsError, whose message the module's entry point hands to JavaScript as a
// thrown Error (each module picks the code: ERR_NATIVE, ERR_SHM). Header-only; no dependency beyond Node's headers.
#ifndef PETS_NAPI_ARGS_H
#define PETS_NAPI_ARGS_H

#include <node_api.h>

#include <cstdint>
#include <string>
#include <vector>

namespace pets_napi {

// An argument error: the entry point that caught it throws a JavaScript Error with this message.
struct JsError {
  std::string msg;
};

struct Args {
  napi_env env;
  std::vector<napi_value> v;
  Args(napi_env e, napi_callback_info info, size_t n) : env(e), v(n) {
    size_t argc = n;
    napi_get_cb_info(e, info, &argc, v.data(), nullptr, nullptr);
    if (argc < n) throw JsError{"expected " + std::to_string(n) + " arguments, got " + std::to_string(argc)};
  }
  // The data of argument i, a typed array of type `want` (`kind` in messages) with at least minLen elements
  // (counted in `unit`); `lengthOut`, when given, receives its element count.
  void* typed(size_t i, napi_typedarray_type want, const char* kind, const char* unit, size_t minLen, const char* name,
              size_t* lengthOut = nullptr) {
    bool is = false;
    napi_is_typedarray(env, v[i], &is);
    if (!is) throw JsError{std::string(name) + " must be a " + kind};
    napi_typedarray_type type;
    size_t len = 0;
    void* data = nullptr;
    napi_get_typedarray_info(env, v[i], &type, &len, &data, nullptr, nullptr);
    if (type != want) throw JsError{std::string(name) + " must be a " + kind};
    if (len < minLen) {
      throw JsError{std::string(name) + " has " + std::to_string(len) + " " + unit + ", needs " + std::to_string(minLen)};
    }
    if (lengthOut != nullptr) *lengthOut = len;
    return data;
  }
  bool isNull(size_t i) {
    napi_valuetype t;
    napi_typeof(env, v[i], &t);
    return t == napi_null || t == napi_undefined;
  }
  float* f32(size_t i, size_t minLen, const char* name, size_t* lengthOut = nullptr) {
    return static_cast<float*>(typed(i, napi_float32_array, "Float32Array", "elements", minLen, name, lengthOut));
  }
  float* f32OrNull(size_t i, size_t minLen, const char* name) {
    return isNull(i) ? nullptr : f32(i, minLen, name);
  }
  // A Uint8Array of at least `bytes` (the pooling calls' workspace), or null.
  uint8_t* u8OrNull(size_t i, size_t bytes, const char* name) {
    return isNull(i) ? nullptr : static_cast<uint8_t*>(typed(i, napi_uint8_array, "Uint8Array", "bytes", bytes, name));
  }
  int64_t i64(size_t i) {
    int64_t out = 0;
    if (napi_get_value_int64(env, v[i], &out) != napi_ok) throw JsError{"argument " + std::to_string(i) + " must be a number"};
    return out;
  }
  double num(size_t i) {
    double out = 0;
    if (napi_get_value_double(env, v[i], &out) != napi_ok) throw JsError{"argument " + std::to_string(i) + " must be a number"};
    return out;
  }
  // Argument i as a string (UTF-8).
  std::string str(size_t i, const char* name) {
    size_t len = 0;
    if (napi_get_value_string_utf8(env, v[i], nullptr, 0, &len) != napi_ok) throw JsError{std::string(name) + " must be a string"};
    std::string out(len, '\0');
    napi_get_value_string_utf8(env, v[i], out.data(), len + 1, &len);
    return out;
  }
  // The pointer argument i wraps (a N-API external), or nullptr when it is not one.
  void* external(size_t i) {
    void* p = nullptr;
    if (napi_get_value_external(env, v[i], &p) != napi_ok) return nullptr;
    return p;
  }
  bool flag(size_t i) {
    bool out = false;
    napi_get_value_bool(env, v[i], &out);
    return out;
  }
};

}  // namespace pets_napi

#endif  // PETS_NAPI_ARGS_H
