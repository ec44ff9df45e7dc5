// pets-trainer N-API argument reader shared by the native modules (pets_dnnl.cc, pets_shm.cc): reads a call's
// arguments with typed checks and throws JsError, whose message the module's entry point hands to JavaScript as a
// thrown TypeError (an argument of the wrong type: a number that is no integer, a handle of another kind…) or Error
// (each module picks the code: ERR_NATIVE, ERR_SHM). Header-only; no dependency beyond Node's headers (N-API 8).
//
// Handles: a module hands a C++ object to JavaScript as an external made by `makeExternal<T>`, which tags it with
// T's 128-bit `kHandle.tag` (napi_type_tag_object); `Args::external<T>` gives the object back only for an external
// carrying that tag (napi_check_object_type_tag), so a wrong value passed from JavaScript (another module's or
// another type's handle, a plain object, a number) is a TypeError instead of a pointer cast to the wrong type.
#ifndef PETS_NAPI_ARGS_H
#define PETS_NAPI_ARGS_H

#include <node_api.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace pets_napi {

// An argument error: the entry point that caught it throws a JavaScript TypeError (`type`) or Error with this message.
struct JsError {
  std::string msg;
  bool type = false;
};

// A JsError thrown as a TypeError: the argument is not of the type the function reads.
inline JsError typeError(std::string msg) { return JsError{std::move(msg), true}; }

// What a C++ type handed to JavaScript as an external declares (as `static constexpr HandleKind kHandle`): its tag, 128
// random bits of its own (never reused for another type), and what messages call it ("shared-memory segment handle").
struct HandleKind {
  napi_type_tag tag;
  const char* name;
};

// Throws `e` as the module's error: a TypeError when `e.type`, else an Error; `code` (ERR_SHM, ERR_NATIVE) is its `code`.
inline void throwAs(napi_env env, const char* code, const JsError& e) {
  if (e.type) napi_throw_type_error(env, code, e.msg.c_str());
  else napi_throw_error(env, code, e.msg.c_str());
}

// An external wrapping `p`, tagged as a T (T::kHandle); `finalize` runs when JavaScript drops it. `p` is the call's
// from then on, whatever happens, and the caller must never free it: should creating the external fail (JsError),
// `finalize` runs at once; should tagging fail (JsError), it runs when the unreachable, untagged external is collected.
template <typename T>
napi_value makeExternal(napi_env env, T* p, napi_finalize finalize) {
  napi_value out;
  if (napi_create_external(env, p, finalize, nullptr, &out) != napi_ok) {
    finalize(env, p, nullptr);
    throw JsError{std::string("cannot make a ") + T::kHandle.name};
  }
  if (napi_type_tag_object(env, out, &T::kHandle.tag) != napi_ok) throw JsError{std::string("cannot tag a ") + T::kHandle.name};
  return out;
}

// How messages name a value that was not what a function reads: "a string", "null", "2.5", "an external"…
inline std::string describe(napi_env env, napi_value v) {
  napi_valuetype t = napi_undefined;
  napi_typeof(env, v, &t);
  switch (t) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "a boolean";
    case napi_number: {
      napi_value s;
      size_t len = 0;
      char buf[64];
      if (napi_coerce_to_string(env, v, &s) != napi_ok || napi_get_value_string_utf8(env, s, buf, sizeof buf, &len) != napi_ok) return "a number";
      return std::string(buf, len);
    }
    case napi_string: return "a string";
    case napi_symbol: return "a symbol";
    case napi_function: return "a function";
    case napi_external: return "an external";
    case napi_bigint: return "a bigint";
    default: return "an object";
  }
}

struct Args {
  napi_env env;
  std::vector<napi_value> v;
  Args(napi_env e, napi_callback_info info, size_t n) : env(e), v(n) {
    size_t argc = n;
    napi_get_cb_info(e, info, &argc, v.data(), nullptr, nullptr);
    if (argc < n) throw typeError("expected " + std::to_string(n) + " arguments, got " + std::to_string(argc));
  }
  // `name` in messages, or "argument i" when the caller gave none.
  static std::string label(size_t i, const char* name) { return name != nullptr ? name : "argument " + std::to_string(i); }
  // The data of argument i, a typed array of type `want` (`kind` in messages) with at least minLen elements
  // (counted in `unit`); `lengthOut`, when given, receives its element count.
  void* typed(size_t i, napi_typedarray_type want, const char* kind, const char* unit, size_t minLen, const char* name,
              size_t* lengthOut = nullptr) {
    bool is = false;
    napi_is_typedarray(env, v[i], &is);
    if (!is) throw typeError(std::string(name) + " must be a " + kind);
    napi_typedarray_type type;
    size_t len = 0;
    void* data = nullptr;
    napi_get_typedarray_info(env, v[i], &type, &len, &data, nullptr, nullptr);
    if (type != want) throw typeError(std::string(name) + " must be a " + kind);
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
  // Argument i as an integer: a number that is finite, whole and a safe integer (|x| ≤ 2^53 − 1, so that it is the
  // integer JavaScript meant); anything else (2.5, NaN, Infinity, 2^53, '3', a boolean) is a TypeError naming it.
  int64_t i64(size_t i, const char* name) {
    double d = 0;
    constexpr double kMaxSafe = 9007199254740991.0;  // Number.MAX_SAFE_INTEGER
    if (napi_get_value_double(env, v[i], &d) != napi_ok || !std::isfinite(d) || std::trunc(d) != d || std::fabs(d) > kMaxSafe) {
      throw typeError(label(i, name) + " must be an integer (Number.isSafeInteger), got " + describe(env, v[i]));
    }
    return int64_t(d);
  }
  // Argument i as a number (any double: NaN and ±Infinity included; ranges are the caller's to check).
  double num(size_t i, const char* name = nullptr) {
    double out = 0;
    if (napi_get_value_double(env, v[i], &out) != napi_ok) throw typeError(label(i, name) + " must be a number, got " + describe(env, v[i]));
    return out;
  }
  // Argument i as a string (UTF-8).
  std::string str(size_t i, const char* name) {
    size_t len = 0;
    if (napi_get_value_string_utf8(env, v[i], nullptr, 0, &len) != napi_ok) throw typeError(std::string(name) + " must be a string");
    std::string out(len, '\0');
    napi_get_value_string_utf8(env, v[i], out.data(), len + 1, &len);
    return out;
  }
  // The T that argument i wraps: an external made by makeExternal<T>. Anything else (a T's handle is told apart from
  // every other external by its tag) is a TypeError naming the argument and the kind it must be.
  template <typename T>
  T* external(size_t i, const char* name) {
    napi_valuetype t = napi_undefined;
    bool tagged = false;
    void* p = nullptr;
    if (napi_typeof(env, v[i], &t) != napi_ok || t != napi_external ||
        napi_check_object_type_tag(env, v[i], &T::kHandle.tag, &tagged) != napi_ok || !tagged ||
        napi_get_value_external(env, v[i], &p) != napi_ok) {
      // An external here is untagged or carries another type's tag: another module's or another kind's handle.
      const std::string got = t == napi_external ? "an external of another kind" : describe(env, v[i]);
      throw typeError(std::string(name) + " must be a " + T::kHandle.name + ", got " + got);
    }
    return static_cast<T*>(p);
  }
  // Argument i as a boolean; anything else (1, 'true', undefined) is a TypeError naming it, not a silent false.
  bool flag(size_t i, const char* name = nullptr) {
    bool out = false;
    if (napi_get_value_bool(env, v[i], &out) != napi_ok) throw typeError(label(i, name) + " must be a boolean, got " + describe(env, v[i]));
    return out;
  }
};

}  // namespace pets_napi

#endif  // PETS_NAPI_ARGS_H
