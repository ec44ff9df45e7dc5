// pets-trainer same-host all-reduce through shared memory: a small N-API addon with no dependency beyond libc (it
// does not link oneDNN), built by scripts/build-native.mjs into native/build/pets_shm.node.
//
// What NCCL's SHM transport and MPI's intra-node collectives do: every rank of a ring that runs on this host maps one
// file (a "segment", in /dev/shm) holding a header and, per rank, two slots of `capacity` floats (double buffering).
// A call is cut into pieces of at most `capacity` elements; for each piece:
//   1. the piece is split in N parts; rank r copies its piece but part r into its slot of the piece's slot set
//      (pieces alternate between the two sets): part r of its slot is read by no peer before step 4;
//   2. barrier;
//   3. reduce-scatter: rank r sums part r over all N ranks (the peers' slots, its own values from its buffer) and
//      writes the sum into its own slot and into its buffer (only rank r reads part r of any slot in this phase);
//   4. barrier;
//   5. all-gather: the rank copies part s of slot s, for every other rank s, into its buffer.
// Per call of n floats a rank so writes n floats into the segment and reads 2n(N−1)/N from its peers' slots.
// No barrier closes a piece: the next piece writes the other slot set, and the one after that writes this set again
// only after passing the next piece's barrier 4, which every rank reaches after its all-gather of this piece.
//
// Bit-identity with the ring (src/worker/allreduce/ring.ts): each element of the call's chunk c (chunkBounds of the
// whole call, as the ring splits it) is summed in the ring's order, starting at rank c's value: acc = x_c, then
// acc = x_(c+k mod N) + acc for k = 1 … N−1, each addition rounded to float32 (-ffp-contract=off, no fast-math), then
// ÷ N when averaging, as the ring's owner does. Which rank adds does not matter, the order does.
//
// Barriers: one 32-bit counter in the segment, incremented by each arrival; barrier number b (counted per rank from
// the segment's start) completes when it reaches N × b. A waiter spins briefly, then sleeps in futex(FUTEX_WAIT)
// with a timeout of at most 20 ms, and between sleeps checks: the call's deadline (ERR_TIMEOUT), this rank's abort
// flag (abort(), ERR_WORKER_LOST), the segment's broken word (another rank timed out: ERR_TIMEOUT, as on the ring,
// where every rank times out when one stalls; failed or aborted: ERR_WORKER_LOST), and every 100 ms whether a peer's
// process still exists (it may have been killed mid-call: ERR_WORKER_LOST). A rank that fails for any reason marks
// the segment broken and wakes the others, so nobody waits for a rank that left. The deadline is fixed when reduce()
// is called (the call's turn on the JavaScript side), so time spent queued for a thread counts against it.
// The waits run on libuv's thread pool (N-API async work resolving a Promise), never on the JavaScript thread: a call
// holds one of the pool's threads (UV_THREADPOOL_SIZE, default 4, shared with sharp's decodes, fs and crypto) until
// it ends, at most its timeout.
//
// Exports: open(path, worldSize, rank, capacity) → handle; reduce(handle, f32, average, step, bucket, timeoutMs) →
// Promise<string> ('' on success, else '<ERR_CODE> <message>'); abort(handle, reason); close(handle);
// sweep(dir, minAgeMs) → names removed; headerBytes; maxRanks; sourceHash.
#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <node_api.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "napi_args.h"

namespace {

using pets_napi::Args;
using pets_napi::JsError;

constexpr uint32_t kMaxRanks = 64;
constexpr size_t kHeaderBytes = 8192;
constexpr int kSpins = 256;
constexpr int64_t kSleepNs = 20'000'000;       // longest futex sleep between checks
constexpr int64_t kPeerCheckNs = 100'000'000;  // how often a waiter looks for dead peers
constexpr size_t kBlock = 1024;                // elements summed at a time in a stack buffer (4 KiB: L1)

struct alignas(64) RankInfo {
  std::atomic<int32_t> pid;  // written at open
  uint32_t average;          // of the current call, read by peers between its first two barriers
  uint64_t length;
  uint64_t step;
  uint64_t bucket;
};

struct Header {
  alignas(64) std::atomic<uint32_t> arrive;
  alignas(64) std::atomic<uint32_t> broken;  // 0, or 1 + the rank that broke the segment
  std::atomic<uint32_t> brokenCode;          // Status of the failure that broke it
  alignas(64) RankInfo ranks[kMaxRanks];
};
static_assert(sizeof(Header) <= kHeaderBytes, "header too large");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "futex word must be lock-free");

enum Status : uint32_t { kOk = 0, kAborted = 1, kTimeout = 2, kBroken = 3, kPeerDead = 4, kMismatch = 5 };

struct Shm {
  int fd = -1;
  void* base = nullptr;
  size_t size = 0;
  Header* h = nullptr;
  float* slots = nullptr;
  uint32_t n = 0, rank = 0;
  size_t capacity = 0;
  uint32_t barriers = 0;  // barriers this rank entered
  uint64_t pieces = 0;    // pieces this rank did (picks the slot set)
  bool unlinked = false;
  bool closed = false;
  std::atomic<bool> busy{false};
  std::atomic<uint32_t> abortFlag{0};
  std::vector<char> seenAlive;  // per rank: its pid was seen running (only such a pid can be found dead)
  std::string path;
  std::string abortReason;

  // The tag of its handles (napi_args.h): random bits of this type alone.
  static constexpr pets_napi::HandleKind kHandle{{0x8f3c2a61d47e0b95ULL, 0x5be1c97a02f46d38ULL}, "shared-memory segment handle (from open())"};

  float* slot(uint64_t set, uint32_t r) const { return slots + (set * n + r) * capacity; }
};

int64_t nowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

void futexWake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

void futexWait(std::atomic<uint32_t>* word, uint32_t expected, int64_t ns) {
  timespec ts{time_t(ns / 1'000'000'000), long(ns % 1'000'000'000)};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// 1 running, 0 gone (no such process, or a zombie: killed and not yet reaped), -1 unknown (e.g. another pid namespace).
int processState(int32_t pid) {
  if (pid <= 0) return -1;
  if (kill(pid, 0) != 0) return errno == ESRCH ? 0 : 1;
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 1;
  ssize_t got = read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (got <= 0) return 1;
  buf[got] = 0;
  const char* paren = strrchr(buf, ')');  // the command name may hold spaces and parentheses
  return paren != nullptr && paren[1] == ' ' && paren[2] == 'Z' ? 0 : 1;
}

// The first peer whose process was seen running and is gone now, or -1.
int deadPeer(Shm* s) {
  for (uint32_t r = 0; r < s->n; r++) {
    if (r == s->rank) continue;
    int state = processState(s->h->ranks[r].pid.load(std::memory_order_acquire));
    if (state == 1) s->seenAlive[r] = 1;
    else if (state == 0 && s->seenAlive[r]) return int(r);
  }
  return -1;
}

void breakSegment(Shm* s, Status why) {
  uint32_t expected = 0;
  if (s->h->broken.compare_exchange_strong(expected, s->rank + 1)) s->h->brokenCode.store(why);
  futexWake(&s->h->arrive);
}

struct Failure {
  Status status = kOk;
  std::string message;
};

Failure fail(Status status, std::string message) { return Failure{status, std::move(message)}; }

std::string brokenMessage(Shm* s) {
  uint32_t by = s->h->broken.load() - 1;
  uint32_t code = s->h->brokenCode.load();
  const char* why = code == kTimeout ? "timed out" : code == kAborted ? "was aborted" : code == kPeerDead ? "found a peer dead"
                  : code == kMismatch ? "saw mismatched calls" : "failed";
  return "shared-memory all-reduce broken: rank " + std::to_string(by) + " " + why + " in a call";
}

// The failure of a rank that finds the segment broken by another: a peer's timeout is this call's timeout too
// (ERR_TIMEOUT, as every rank of a ring whose peer stalls times out), anything else ERR_WORKER_LOST.
Failure brokenFailure(Shm* s) {
  return fail(s->h->brokenCode.load() == kTimeout ? kTimeout : kBroken, brokenMessage(s));
}

Failure barrier(Shm* s, int64_t deadline) {
  Header* h = s->h;
  const uint32_t target = (s->barriers + 1) * s->n;  // wraps with the counter
  s->barriers++;
  uint32_t v = h->arrive.fetch_add(1, std::memory_order_acq_rel) + 1;
  if (v == target) {
    futexWake(&h->arrive);
    return {};
  }
  for (int i = 0; i < kSpins; i++) {
    v = h->arrive.load(std::memory_order_acquire);
    if (int32_t(v - target) >= 0) return {};
    cpuRelax();
  }
  int64_t nextPeerCheck = 0;
  for (;;) {
    v = h->arrive.load(std::memory_order_acquire);
    if (int32_t(v - target) >= 0) return {};
    if (s->abortFlag.load()) return fail(kAborted, "all-reduce aborted: " + s->abortReason);
    if (h->broken.load() != 0) return brokenFailure(s);
    int64_t now = nowNs();
    if (now >= deadline) return fail(kTimeout, "waiting for all ranks at a barrier");
    if (now >= nextPeerCheck) {
      int dead = deadPeer(s);
      if (dead >= 0) {
        return fail(kPeerDead, "rank " + std::to_string(dead) + " (pid " + std::to_string(h->ranks[dead].pid.load()) +
                                   ") exited during the call");
      }
      nextPeerCheck = now + kPeerCheckNs;
    }
    int64_t sleep = deadline - now < kSleepNs ? deadline - now : kSleepNs;
    futexWait(&h->arrive, v, sleep);
  }
}

// dst[i] = dst2[i] = the ring's float32 sum of src[0][i], src[1][i], … (src[0] first), ÷ n when average; dst and dst2
// may be among src (each block is read whole before it is written).
void sumInOrder(float* dst, float* dst2, const float* const* src, uint32_t n, size_t count, bool average) {
  float acc[kBlock];
  const float fn = float(n);
  for (size_t base = 0; base < count; base += kBlock) {
    const size_t m = count - base < kBlock ? count - base : kBlock;
    const float* a = src[0] + base;
    for (size_t i = 0; i < m; i++) acc[i] = a[i];
    for (uint32_t k = 1; k < n; k++) {
      const float* b = src[k] + base;
      for (size_t i = 0; i < m; i++) acc[i] = b[i] + acc[i];
    }
    if (average) for (size_t i = 0; i < m; i++) acc[i] = acc[i] / fn;
    float* d = dst + base;
    float* d2 = dst2 + base;
    for (size_t i = 0; i < m; i++) d[i] = acc[i];
    for (size_t i = 0; i < m; i++) d2[i] = acc[i];
  }
}

// [start, end) of chunk c of `length` elements split in n (ring-schedule.ts chunkBounds).
inline uint64_t chunkStart(uint64_t length, uint32_t n, uint32_t c) { return (uint64_t(c) * length) / n; }

// `deadline`: CLOCK_MONOTONIC nanoseconds, fixed when reduce() was called (the call's turn), not when a thread-pool
// thread picked the work up.
Failure runCall(Shm* s, float* buf, uint64_t length, bool average, uint64_t step, uint64_t bucket, int64_t deadline) {
  const uint32_t n = s->n, rank = s->rank;
  Header* h = s->h;
  if (h->broken.load() != 0) return brokenFailure(s);
  RankInfo& me = h->ranks[rank];
  me.length = length;
  me.step = step;
  me.bucket = bucket;
  me.average = average ? 1 : 0;
  const uint64_t cap = s->capacity;
  const uint64_t pieces = length == 0 ? 1 : (length + cap - 1) / cap;
  const float* src[kMaxRanks];
  for (uint64_t p = 0; p < pieces; p++) {
    const uint64_t off = p * cap;
    const uint64_t m = length - off < cap ? length - off : cap;
    const uint64_t set = s->pieces++ & 1;
    // This rank's part [a, b) of the piece is read by no peer before it holds the sums (rank r alone sums part r),
    // so only the other parts are copied in; the sums read this rank's values from `buf` itself.
    const uint64_t a = off + (rank * m) / n, b = off + ((rank + 1) * m) / n;
    float* mine = s->slot(set, rank);
    memcpy(mine, buf + off, (a - off) * sizeof(float));
    memcpy(mine + (b - off), buf + b, (off + m - b) * sizeof(float));
    Failure f = barrier(s, deadline);
    if (f.status != kOk) return f;
    if (p == 0) {
      for (uint32_t r = 0; r < n; r++) {
        const RankInfo& o = h->ranks[r];
        if (o.length != length || o.step != step || o.bucket != bucket || o.average != me.average) {
          return fail(kMismatch, "rank " + std::to_string(r) + " called with length " + std::to_string(o.length) + ", step " +
                                     std::to_string(o.step) + ", bucket " + std::to_string(o.bucket) + ", average " +
                                     std::to_string(o.average) + "; this rank (" + std::to_string(rank) + ") with " +
                                     std::to_string(length) + ", " + std::to_string(step) + ", " + std::to_string(bucket) +
                                     ", " + std::to_string(me.average) + "; every rank must make the same calls");
        }
      }
      if (!s->unlinked) {  // every rank has mapped the segment: its name is no longer needed
        unlink(s->path.c_str());
        s->unlinked = true;
      }
    }
    // Reduce-scatter of this rank's part [a, b) of the piece, chunk by chunk of the whole call: the sums go into this
    // rank's slot (for the peers' all-gather) and into `buf` (this rank's own all-gather, done here).
    for (uint64_t x = a; x < b;) {
      uint32_t c = uint32_t((x * n) / (length == 0 ? 1 : length));  // chunk holding x: largest c with chunkStart ≤ x
      while (c + 1 < n && chunkStart(length, n, c + 1) <= x) c++;
      while (c > 0 && chunkStart(length, n, c) > x) c--;
      const uint64_t chunkEnd = chunkStart(length, n, c + 1);
      const uint64_t y = chunkEnd < b ? chunkEnd : b;
      for (uint32_t k = 0; k < n; k++) {
        const uint32_t from = (c + k) % n;
        src[k] = from == rank ? buf + x : s->slot(set, from) + (x - off);
      }
      sumInOrder(mine + (x - off), buf + x, src, n, y - x, average);
      x = y;
    }
    f = barrier(s, deadline);
    if (f.status != kOk) return f;
    // All-gather: part r of the piece from rank r's slot (this rank's own part is in `buf` already).
    for (uint32_t r = 0; r < n; r++) {
      if (r == rank) continue;
      const uint64_t ra = (r * m) / n, rb = ((r + 1) * m) / n;
      memcpy(buf + off + ra, s->slot(set, r) + ra, (rb - ra) * sizeof(float));
    }
  }
  return {};
}

// ---- N-API --------------------------------------------------------------------------------------------------------

napi_value throwError(napi_env env, const std::string& message) {
  napi_throw_error(env, "ERR_SHM", message.c_str());
  return nullptr;
}

// The symbolic name of a system error number ("ENOSPC"), as Node's errors carry it in `code`; "E<n>" for others.
const char* errnoName(int e, char* buf, size_t size) {
  switch (e) {
    case ENOSPC: return "ENOSPC";
    case EDQUOT: return "EDQUOT";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case EROFS: return "EROFS";
    case ENOENT: return "ENOENT";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    default: snprintf(buf, size, "E%d", e); return buf;
  }
}

// Throws an ERR_SHM Error whose `errnoName` property names the system error (so callers match the cause, not the
// wording of strerror, which depends on the C library and the locale).
napi_value throwSysError(napi_env env, const std::string& message, int e) {
  napi_value msg, code, error, name;
  char buf[16];
  napi_create_string_utf8(env, message.c_str(), NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, "ERR_SHM", NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, msg, &error);
  napi_create_string_utf8(env, errnoName(e, buf, sizeof buf), NAPI_AUTO_LENGTH, &name);
  napi_set_named_property(env, error, "errnoName", name);
  napi_throw(env, error);
  return nullptr;
}

// Runs an entry point's body; an argument error (JsError, from Args or thrown here) becomes a thrown ERR_SHM TypeError
// (a value of the wrong type) or Error whose message starts with the function's name.
template <typename F>
napi_value guarded(napi_env env, const char* fn, F&& f) {
  try {
    return f();
  } catch (const JsError& e) {
    pets_napi::throwAs(env, "ERR_SHM", JsError{std::string(fn) + ": " + e.msg, e.type});
    return nullptr;
  } catch (const std::exception& e) {
    return throwError(env, std::string(fn) + ": " + e.what());
  }
}

void unmap(Shm* s) {
  if (s->closed) return;
  s->closed = true;
  if (s->base != nullptr) munmap(s->base, s->size);
  if (s->fd >= 0) ::close(s->fd);
  if (!s->unlinked) unlink(s->path.c_str());
  s->base = nullptr;
  s->fd = -1;
}

void finalize(napi_env, void* data, void*) {
  Shm* s = static_cast<Shm*>(data);
  if (!s->busy.load()) {
    unmap(s);
    delete s;
  }  // else a call is still running (cannot happen: its promise holds the handle); leak rather than crash
}

// open(path, worldSize, rank, capacity): creates or opens the segment file, sizes it, maps it, registers this pid.
napi_value Open(napi_env env, napi_callback_info info) {
  return guarded(env, "open", [&]() -> napi_value {
    Args a(env, info, 4);
    std::string path = a.str(0, "path");
    double n = a.num(1, "worldSize"), rank = a.num(2, "rank"), cap = a.num(3, "capacity");
    if (!(n >= 1 && n <= kMaxRanks && n == double(uint32_t(n)))) throw JsError{"worldSize must be an integer in [1, 64]"};
    if (!(rank >= 0 && rank < n && rank == double(uint32_t(rank)))) throw JsError{"rank must be an integer in [0, worldSize)"};
    if (!(cap >= 1024 && cap <= (1 << 28) && cap == double(uint32_t(cap)))) throw JsError{"capacity must be an integer in [1024, 2^28]"};
    auto* s = new Shm();
    s->n = uint32_t(n);
    s->rank = uint32_t(rank);
    s->capacity = size_t(cap);
    s->path = path;
    s->seenAlive.assign(s->n, 0);
    s->size = kHeaderBytes + 2 * size_t(s->n) * s->capacity * sizeof(float);
    s->fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    std::string err;
    int sysErr = 0;  // the errno behind err, 0 when err is not a system call's failure
    auto fail = [&](const std::string& what, int e) { err = what + ": " + strerror(e); sysErr = e; };
    if (s->fd < 0) fail("cannot open " + path, errno);
    struct stat st;
    if (err.empty() && fstat(s->fd, &st) != 0) fail("cannot stat " + path, errno);
    if (err.empty() && size_t(st.st_size) != s->size) {
      if (st.st_size != 0) err = path + " has " + std::to_string(st.st_size) + " bytes, expected " + std::to_string(s->size) + " (another membership?)";
      // Reserve the pages now: a full tmpfs then fails here instead of raising SIGBUS at the first write.
      else if (int e = posix_fallocate(s->fd, 0, off_t(s->size)); e != 0) fail("cannot size " + path, e);
    }
    if (err.empty()) {
      s->base = mmap(nullptr, s->size, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
      if (s->base == MAP_FAILED) {
        s->base = nullptr;
        fail("cannot map " + path, errno);
      }
    }
    if (!err.empty()) {
      unmap(s);
      delete s;
      return sysErr != 0 ? throwSysError(env, err, sysErr) : throwError(env, err);
    }
    s->h = static_cast<Header*>(s->base);
    s->slots = reinterpret_cast<float*>(static_cast<char*>(s->base) + kHeaderBytes);
    s->h->ranks[s->rank].pid.store(int32_t(getpid()), std::memory_order_release);
    s->seenAlive[s->rank] = 1;
    return pets_napi::makeExternal(env, s, finalize);
  });
}

struct Work {
  Shm* s;
  float* data;
  uint64_t length;
  bool average;
  uint64_t step, bucket;
  int64_t deadline;  // CLOCK_MONOTONIC ns
  napi_ref keepBuffer = nullptr;
  napi_ref keepHandle = nullptr;
  napi_deferred deferred = nullptr;
  napi_async_work work = nullptr;
  Failure result;
};

void Execute(napi_env, void* data) {
  Work* w = static_cast<Work*>(data);
  w->result = runCall(w->s, w->data, w->length, w->average, w->step, w->bucket, w->deadline);
  if (w->result.status != kOk && w->result.status != kBroken && w->result.status != kMismatch) breakSegment(w->s, w->result.status);
}

void Complete(napi_env env, napi_status, void* data) {
  Work* w = static_cast<Work*>(data);
  w->s->busy.store(false);
  static const char* codes[] = {"", "ERR_WORKER_LOST", "ERR_TIMEOUT", "ERR_WORKER_LOST", "ERR_WORKER_LOST", "ERR_PROTOCOL"};
  std::string out = w->result.status == kOk ? "" : std::string(codes[w->result.status]) + " " + w->result.message;
  napi_value v;
  napi_create_string_utf8(env, out.c_str(), out.size(), &v);
  napi_resolve_deferred(env, w->deferred, v);
  napi_delete_reference(env, w->keepBuffer);
  napi_delete_reference(env, w->keepHandle);
  napi_delete_async_work(env, w->work);
  delete w;
}

// reduce(handle, f32, average, step, bucket, timeoutMs) → Promise<string>
napi_value Reduce(napi_env env, napi_callback_info info) {
  return guarded(env, "reduce", [&]() -> napi_value {
    Args a(env, info, 6);
    Shm* s = a.external<Shm>(0, "handle");
    if (s->closed) throw JsError{"the segment is closed"};
    size_t length = 0;
    float* data = a.f32(1, 0, "buffer", &length);
    const bool average = a.flag(2, "average");
    const int64_t step = a.i64(3, "step"), bucket = a.i64(4, "bucket");
    if (step < 0 || bucket < 0) throw JsError{"step and bucket must be ≥ 0, got " + std::to_string(step) + " and " + std::to_string(bucket)};
    // Finite and at most ~31.7 years, so the nanosecond deadline below fits an int64_t (Infinity would be undefined).
    const double timeoutMs = a.num(5, "timeoutMs");
    if (!(timeoutMs > 0 && timeoutMs <= 1e12)) throw JsError{"timeoutMs must be a finite number in (0, 1e12]"};
    if (s->busy.exchange(true)) throw JsError{"a call is already running on this segment"};
    const int64_t deadline = nowNs() + int64_t(timeoutMs * 1e6);
    auto* w = new Work{s, data, length, average, uint64_t(step), uint64_t(bucket), deadline};
    napi_create_reference(env, a.v[1], 1, &w->keepBuffer);
    napi_create_reference(env, a.v[0], 1, &w->keepHandle);
    napi_value promise, name;
    napi_create_promise(env, &w->deferred, &promise);
    napi_create_string_utf8(env, "pets_shm_reduce", NAPI_AUTO_LENGTH, &name);
    napi_create_async_work(env, nullptr, name, Execute, Complete, w, &w->work);
    napi_queue_async_work(env, w->work);
    return promise;
  });
}

// abort(handle, reason): ends this rank's wait in flight (ERR_WORKER_LOST) and breaks the segment for the others.
napi_value Abort(napi_env env, napi_callback_info info) {
  return guarded(env, "abort", [&]() -> napi_value {
    Args a(env, info, 2);
    Shm* s = a.external<Shm>(0, "handle");
    if (s->closed) return nullptr;
    if (s->abortFlag.load() != 0) return nullptr;  // the first reason stands; the flag's store publishes it
    s->abortReason = a.str(1, "reason");
    s->abortFlag.store(1);
    breakSegment(s, kAborted);
    return nullptr;
  });
}

// close(handle) → true when unmapped, false while a call still runs (the caller drains its calls first).
napi_value Close(napi_env env, napi_callback_info info) {
  return guarded(env, "close", [&]() -> napi_value {
    Args a(env, info, 1);
    Shm* s = a.external<Shm>(0, "handle");
    bool done = true;
    if (!s->closed) {
      if (s->busy.load()) done = false;
      else unmap(s);
    }
    napi_value out;
    napi_get_boolean(env, done, &out);
    return out;
  });
}

// sweep(dir, minAgeMs): removes pets-shm-* files older than minAgeMs whose registered pids all are gone.
napi_value Sweep(napi_env env, napi_callback_info info) {
  return guarded(env, "sweep", [&]() -> napi_value {
    Args a(env, info, 2);
    std::string dir = a.str(0, "dir");
    double minAgeMs = a.num(1, "minAgeMs");
    napi_value out;
    napi_create_array(env, &out);
    uint32_t count = 0;
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) return out;
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    while (dirent* e = readdir(d)) {
      if (strncmp(e->d_name, "pets-shm-", 9) != 0) continue;
      std::string path = dir + "/" + e->d_name;
      int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fd < 0) continue;
      struct stat st;
      bool stale = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
                   (now.tv_sec - st.st_mtim.tv_sec) * 1e3 + (now.tv_nsec - st.st_mtim.tv_nsec) / 1e6 >= minAgeMs;
      if (stale && size_t(st.st_size) >= sizeof(Header)) {
        Header h;
        if (pread(fd, &h, sizeof h, 0) == ssize_t(sizeof h)) {
          for (uint32_t r = 0; r < kMaxRanks && stale; r++) {
            int32_t pid = h.ranks[r].pid.load();
            if (pid > 0 && processState(pid) != 0) stale = false;
          }
        }
      }
      ::close(fd);
      if (stale && unlink(path.c_str()) == 0) {
        napi_value name;
        napi_create_string_utf8(env, e->d_name, NAPI_AUTO_LENGTH, &name);
        napi_set_element(env, out, count++, name);
      }
    }
    closedir(d);
    return out;
  });
}

#ifndef PETS_SOURCE_HASH
#define PETS_SOURCE_HASH ""
#endif

napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor fns[] = {
      {"open", nullptr, Open, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"reduce", nullptr, Reduce, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"abort", nullptr, Abort, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"close", nullptr, Close, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"sweep", nullptr, Sweep, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns);
  napi_value v;
  napi_create_uint32(env, uint32_t(kHeaderBytes), &v);
  napi_set_named_property(env, exports, "headerBytes", v);
  napi_create_uint32(env, kMaxRanks, &v);
  napi_set_named_property(env, exports, "maxRanks", v);
  napi_create_string_utf8(env, PETS_SOURCE_HASH, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, exports, "sourceHash", v);
  return exports;
}

}  // namespace

NAPI_MODULE_INIT() { return Init(env, exports); }
