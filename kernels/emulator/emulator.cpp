// cupool's host emulator runtime: the kernel registry, the launch checks, the per-block fiber
// scheduler (barriers and warp collectives), the global memory checks and the C ABI that
// src/emulator/mod.rs calls. See kernels/emulator/README.md.
#include "cuda_emulator.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

__thread uint3 threadIdx;
__thread uint3 blockIdx;
__thread uint3 blockDim;
__thread uint3 gridDim;

// The dynamic shared memory of the block running on this OS thread (defined, with an alias for
// every `extern __shared__` name in the kernel sources, in the file build/emulator.rs generates).
// The part past the launch's request is a guard filled with kGuardByte.
static constexpr std::size_t kMaxSharedBytes = cupool_emu::kMaxDynamicSharedBytes;
static constexpr unsigned char kGuardByte = 0xA5;
extern "C" {
extern __thread unsigned char cupool_emu_dynamic_shared[cupool_emu::kDynamicSharedStorageBytes];
}

// Defined in the file build/emulator.rs generates: refers to one symbol in every kernel object,
// so that the linker keeps every kernel (and its registration) from the static library.
extern "C" void cupool_emu_link_all_kernels(void);

extern "C" {
// One buffer a launch may touch: [base, base + len). kind: 0 input, 1 output, 2 scratch.
struct CupoolEmuBuffer {
    std::uint64_t base;
    std::uint64_t len;
    std::uint32_t kind;
    std::uint32_t index;
    std::uint32_t writable;
    std::uint32_t reserved;
};
}

namespace cupool_emu {
namespace {

struct Kernel {
    std::string name;
    GenericFn fn;
    Invoker invoker;
    std::vector<std::size_t> param_sizes;
};

// Filled by static initialisers before main; read-only afterwards.
std::vector<Kernel>& registry() {
    static std::vector<Kernel> kernels;
    return kernels;
}

std::mutex& counts_mutex() {
    static std::mutex m;
    return m;
}
std::map<std::string, std::uint64_t>& launch_counts() {
    static std::map<std::string, std::uint64_t> counts;
    return counts;
}

// ------------------------------------------------------------------------------------------
// Context switching. x86-64: a hand-rolled switch of the callee-saved registers (a few
// nanoseconds; ucontext makes a sigprocmask system call per switch). Elsewhere: ucontext.
// ------------------------------------------------------------------------------------------
#if defined(__x86_64__)
extern "C" void cupool_emu_switch(void** save_sp, void* load_sp);
extern "C" void cupool_emu_trampoline();
asm(R"(
    .text
    .globl cupool_emu_switch
    .hidden cupool_emu_switch
    .type cupool_emu_switch,@function
cupool_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cupool_emu_switch, .-cupool_emu_switch

    .globl cupool_emu_trampoline
    .hidden cupool_emu_trampoline
    .type cupool_emu_trampoline,@function
cupool_emu_trampoline:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size cupool_emu_trampoline, .-cupool_emu_trampoline
)");
#endif

constexpr std::size_t kFiberStackBytes = 128 * 1024;
constexpr unsigned kMaxThreads = 1024;

enum class FiberState { Runnable, AtBlockBarrier, AtWarpOp, Done };

struct Fiber {
    unsigned linear = 0;
    uint3 tid{0, 0, 0};
    FiberState state = FiberState::Done;
#if defined(__x86_64__)
    void* sp = nullptr;
#else
    ucontext_t context;
#endif
    // The collective this fiber waits in, and its result.
    int op = 0;
    unsigned mask = 0;
    std::uint64_t value = 0;
    int lane_arg = 0;
    int width = 32;
    const char* what = "";
    std::uint64_t result = 0;
};

// Fiber stacks, kept per OS thread and reused across blocks and launches. Each has a
// PROT_NONE page below it so that a stack overflow faults instead of corrupting a neighbour.
struct StackPool {
    std::vector<unsigned char*> stacks;  // each the start of kFiberStackBytes usable bytes
    std::size_t page = 4096;
    StackPool() {
        long p = sysconf(_SC_PAGESIZE);
        if (p > 0) page = (std::size_t)p;
    }
    ~StackPool() {
        for (unsigned char* s : stacks) munmap(s - page, kFiberStackBytes + page);
    }
    bool ensure(std::size_t count) {
        while (stacks.size() < count) {
            void* region = mmap(nullptr, kFiberStackBytes + page, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (region == MAP_FAILED) return false;
            mprotect(region, page, PROT_NONE);
            stacks.push_back(static_cast<unsigned char*>(region) + page);
        }
        return true;
    }
};

struct Launch {
    const Kernel* kernel = nullptr;
    void** params = nullptr;
    const CupoolEmuBuffer* buffers = nullptr;
    std::size_t buffer_count = 0;
    std::size_t shared_bytes = 0;
    unsigned threads = 0;
    std::vector<Fiber> fibers;
    Fiber* current = nullptr;
#if defined(__x86_64__)
    void* scheduler_sp = nullptr;
#else
    ucontext_t scheduler_context;
#endif
    bool faulted = false;
    std::string error;
};

thread_local StackPool t_stacks;
thread_local Launch* t_launch = nullptr;

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
    char buf[1024];
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, args);
    va_end(args);
    return buf;
}

const char* kind_name(std::uint32_t kind) {
    switch (kind) {
        case 0: return "input";
        case 1: return "output";
        default: return "scratch";
    }
}

// "kernel K, block (x,y,z) thread (x,y,z)": where a fault happened.
std::string where(const Launch& launch) {
    std::string s = "kernel " + launch.kernel->name;
    s += format(", block (%u,%u,%u)", blockIdx.x, blockIdx.y, blockIdx.z);
    if (launch.current != nullptr) {
        s += format(" thread (%u,%u,%u)", launch.current->tid.x, launch.current->tid.y, launch.current->tid.z);
    }
    return s;
}

// Hands control from the current fiber back to the scheduler.
void yield_to_scheduler(Launch& launch) {
    Fiber* self = launch.current;
#if defined(__x86_64__)
    cupool_emu_switch(&self->sp, launch.scheduler_sp);
#else
    swapcontext(&self->context, &launch.scheduler_context);
#endif
}

void resume(Launch& launch, Fiber& fiber) {
    launch.current = &fiber;
    threadIdx = fiber.tid;
#if defined(__x86_64__)
    cupool_emu_switch(&launch.scheduler_sp, fiber.sp);
#else
    swapcontext(&launch.scheduler_context, &fiber.context);
#endif
    launch.current = nullptr;
}

// Records the first fault, and ends the calling fiber: it is never resumed, its stack is simply
// reused by the next block (kernels hold no resources that need releasing).
[[noreturn]] void fail_current(Launch& launch, std::string message) {
    if (!launch.faulted) {
        launch.faulted = true;
        launch.error = std::move(message);
    }
    launch.current->state = FiberState::Done;
    yield_to_scheduler(launch);
    __builtin_unreachable();
}

void fiber_main(void* arg) {
    Fiber* fiber = static_cast<Fiber*>(arg);
    Launch& launch = *t_launch;
    launch.kernel->invoker(launch.kernel->fn, launch.params);
    fiber->state = FiberState::Done;
    yield_to_scheduler(launch);
    __builtin_unreachable();
}

#if !defined(__x86_64__)
void fiber_main_ucontext(unsigned hi, unsigned lo) {
    fiber_main(reinterpret_cast<void*>(((std::uintptr_t)hi << 32) | (std::uintptr_t)lo));
}
#endif

void start_fiber(Fiber& fiber, unsigned char* stack) {
#if defined(__x86_64__)
    // The frame cupool_emu_switch pops: mxcsr/x87 control word, r15, r14, r13 (entry), r12 (its
    // argument), rbx, rbp, then the return address (the trampoline). After the `ret` the stack
    // pointer is 16-byte aligned, as the trampoline's `call` needs.
    std::uintptr_t top = ((std::uintptr_t)(stack + kFiberStackBytes)) & ~(std::uintptr_t)15;
    std::uint64_t* sp = reinterpret_cast<std::uint64_t*>(top - 80);
    std::uint32_t mxcsr;
    std::uint16_t fpcw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpcw));
    std::uint64_t control = (std::uint64_t)mxcsr | ((std::uint64_t)fpcw << 32);
    sp[0] = control;
    sp[1] = 0;                                             // r15
    sp[2] = 0;                                             // r14
    sp[3] = reinterpret_cast<std::uint64_t>(&fiber_main);  // r13
    sp[4] = reinterpret_cast<std::uint64_t>(&fiber);       // r12
    sp[5] = 0;                                             // rbx
    sp[6] = 0;                                             // rbp
    sp[7] = reinterpret_cast<std::uint64_t>(&cupool_emu_trampoline);
    fiber.sp = sp;
#else
    getcontext(&fiber.context);
    fiber.context.uc_stack.ss_sp = stack;
    fiber.context.uc_stack.ss_size = kFiberStackBytes;
    fiber.context.uc_link = nullptr;
    std::uintptr_t p = reinterpret_cast<std::uintptr_t>(&fiber);
    makecontext(&fiber.context, (void (*)())fiber_main_ucontext, 2, (unsigned)(p >> 32), (unsigned)p);
#endif
}

// ------------------------------------------------------------------------------------------
// Warp collectives: the scheduler releases a group once every lane of its mask waits in it.
// ------------------------------------------------------------------------------------------
const char* op_name(int op) {
    switch (op) {
        case kShflIdx: return "__shfl_sync";
        case kShflUp: return "__shfl_up_sync";
        case kShflDown: return "__shfl_down_sync";
        case kShflXor: return "__shfl_xor_sync";
        case kBallot: return "__ballot_sync";
        case kAny: return "__any_sync";
        case kAll: return "__all_sync";
        default: return "__syncwarp";
    }
}

// Computes the results of one released group (PTX shfl.sync semantics: a lane whose source is
// outside its segment keeps its own value).
bool complete_warp_group(Launch& launch, unsigned warp, unsigned mask, std::string& error) {
    Fiber* lanes = &launch.fibers[warp * 32];
    const Fiber& first = lanes[__builtin_ctz(mask)];
    std::uint64_t ballot = 0;
    for (unsigned l = 0; l < 32; ++l) {
        if ((mask >> l) & 1u) ballot |= (lanes[l].value != 0 ? 1ull : 0ull) << l;
    }
    for (unsigned l = 0; l < 32; ++l) {
        if (!((mask >> l) & 1u)) continue;
        Fiber& f = lanes[l];
        switch (first.op) {
            case kShflIdx:
            case kShflUp:
            case kShflDown:
            case kShflXor: {
                int width = f.width;
                unsigned segmask = (unsigned)(32 - width) & 31u;
                int min_lane = (int)(l & segmask);
                int max_lane = f.op == kShflUp ? min_lane : (int)(min_lane | (31u & ~segmask));
                int b = f.lane_arg;
                int j = 0;
                bool in_range = false;
                switch (f.op) {
                    case kShflUp: j = (int)l - b; in_range = j >= max_lane; break;
                    case kShflDown: j = (int)l + b; in_range = j <= max_lane; break;
                    case kShflXor: j = (int)l ^ b; in_range = j <= max_lane; break;
                    default: j = min_lane | (b & 31 & (int)~segmask); in_range = j <= max_lane; break;
                }
                if (!in_range) j = (int)l;
                if (j < 0 || j > 31 || !((mask >> j) & 1u)) {
                    error = format("kernel %s, block (%u,%u,%u) warp %u lane %u: %s reads lane %d, which is not in "
                                   "its mask 0x%08x",
                                   launch.kernel->name.c_str(), blockIdx.x, blockIdx.y, blockIdx.z, warp, l,
                                   op_name(f.op), j, mask);
                    return false;
                }
                f.result = lanes[j].value;
                break;
            }
            case kBallot: f.result = ballot; break;
            case kAny: f.result = ballot != 0; break;
            case kAll: f.result = ballot == mask; break;
            default: f.result = 0; break;
        }
        f.state = FiberState::Runnable;
    }
    return true;
}

// Releases every warp group whose lanes have all arrived. Returns false (with `error`) on a
// collective that can never complete correctly.
bool release_warp_groups(Launch& launch, bool& released, std::string& error) {
    unsigned warps = launch.threads / 32;
    for (unsigned w = 0; w < warps; ++w) {
        Fiber* lanes = &launch.fibers[w * 32];
        unsigned handled = 0;
        for (unsigned l = 0; l < 32; ++l) {
            Fiber& f = lanes[l];
            if (f.state != FiberState::AtWarpOp || ((handled >> l) & 1u)) continue;
            unsigned mask = f.mask;
            bool complete = true;
            for (unsigned m = 0; m < 32; ++m) {
                if (!((mask >> m) & 1u)) continue;
                Fiber& other = lanes[m];
                if (other.state == FiberState::Done) {
                    error = format("kernel %s, block (%u,%u,%u) warp %u: lane %u waits in %s with mask 0x%08x, "
                                   "but lane %u of that mask has exited",
                                   launch.kernel->name.c_str(), blockIdx.x, blockIdx.y, blockIdx.z, w, l,
                                   op_name(f.op), mask, m);
                    return false;
                }
                if (other.state != FiberState::AtWarpOp) {
                    complete = false;
                    continue;
                }
                if (other.mask != mask || other.op != f.op) {
                    error = format("kernel %s, block (%u,%u,%u) warp %u: lane %u waits in %s with mask 0x%08x while "
                                   "lane %u waits in %s with mask 0x%08x",
                                   launch.kernel->name.c_str(), blockIdx.x, blockIdx.y, blockIdx.z, w, l,
                                   op_name(f.op), mask, m, op_name(other.op), other.mask);
                    return false;
                }
            }
            handled |= mask;
            if (!complete) continue;
            if (!complete_warp_group(launch, w, mask, error)) return false;
            released = true;
        }
    }
    return true;
}

// ------------------------------------------------------------------------------------------
// One block.
// ------------------------------------------------------------------------------------------
bool run_block(Launch& launch) {
    unsigned char* shared = cupool_emu_dynamic_shared;
    // NaN (0xFF bytes) in the requested part so a read before a write shows; the guard after it.
    std::memset(shared, 0xFF, launch.shared_bytes);
    std::memset(shared + launch.shared_bytes, kGuardByte, sizeof(cupool_emu_dynamic_shared) - launch.shared_bytes);

    unsigned n = launch.threads;
    for (unsigned i = 0; i < n; ++i) {
        Fiber& f = launch.fibers[i];
        f.linear = i;
        f.tid = uint3{i % blockDim.x, (i / blockDim.x) % blockDim.y, i / (blockDim.x * blockDim.y)};
        f.state = FiberState::Runnable;
        start_fiber(f, t_stacks.stacks[i]);
    }

    for (;;) {
        for (unsigned i = 0; i < n; ++i) {
            Fiber& f = launch.fibers[i];
            if (f.state != FiberState::Runnable) continue;
            resume(launch, f);
            if (launch.faulted) return false;
        }
        unsigned done = 0, at_block = 0, at_warp = 0;
        for (unsigned i = 0; i < n; ++i) {
            switch (launch.fibers[i].state) {
                case FiberState::Done: ++done; break;
                case FiberState::AtBlockBarrier: ++at_block; break;
                case FiberState::AtWarpOp: ++at_warp; break;
                default: break;
            }
        }
        if (done == n) break;
        if (at_warp > 0) {
            bool released = false;
            std::string error;
            if (!release_warp_groups(launch, released, error)) {
                launch.faulted = true;
                launch.error = error;
                return false;
            }
            if (released) continue;
        }
        if (at_block > 0 && at_block + done == n) {
            // Every thread still running has reached the barrier: compute the reductions of the
            // __syncthreads_* variants and let everyone go.
            int count = 0, all = 1, any = 0, op = kSyncThreads;
            for (unsigned i = 0; i < n; ++i) {
                Fiber& f = launch.fibers[i];
                if (f.state != FiberState::AtBlockBarrier) continue;
                op = f.op;
                count += f.value != 0;
                all &= f.value != 0;
                any |= f.value != 0;
            }
            for (unsigned i = 0; i < n; ++i) {
                Fiber& f = launch.fibers[i];
                if (f.state != FiberState::AtBlockBarrier) continue;
                if (f.op != op) {
                    launch.faulted = true;
                    launch.error = format("kernel %s, block (%u,%u,%u): threads wait in different __syncthreads "
                                          "variants at once",
                                          launch.kernel->name.c_str(), blockIdx.x, blockIdx.y, blockIdx.z);
                    return false;
                }
                f.result = op == kSyncCount ? count : op == kSyncAnd ? all : op == kSyncOr ? any : 0;
                f.state = FiberState::Runnable;
            }
            continue;
        }
        launch.faulted = true;
        launch.error = format("kernel %s, block (%u,%u,%u): deadlock: %u threads wait in __syncthreads, %u in warp "
                              "collectives that cannot complete, %u have exited",
                              launch.kernel->name.c_str(), blockIdx.x, blockIdx.y, blockIdx.z, at_block, at_warp,
                              done);
        return false;
    }

    // Shared memory overrun: the first guard byte that changed.
    const unsigned char* guard = shared + launch.shared_bytes;
    std::size_t guard_len = sizeof(cupool_emu_dynamic_shared) - launch.shared_bytes;
    for (std::size_t i = 0; i < guard_len; ++i) {
        if (guard[i] != kGuardByte) {
            launch.faulted = true;
            launch.error = format("kernel %s, block (%u,%u,%u): write past the end of dynamic shared memory: "
                                  "%zu bytes were requested, byte offset %zu (float element %zu) was written",
                                  launch.kernel->name.c_str(), blockIdx.x, blockIdx.y, blockIdx.z,
                                  launch.shared_bytes, launch.shared_bytes + i, (launch.shared_bytes + i) / 4);
            return false;
        }
    }
    return true;
}

const Kernel* find_kernel(const char* name) {
    for (const Kernel& k : registry()) {
        if (k.name == name) return &k;
    }
    return nullptr;
}

std::string check_config(const char* name, const std::uint32_t grid[3], const std::uint32_t block[3],
                         std::uint32_t shared_bytes) {
    std::string k = std::string("kernel ") + name + ": ";
    for (int d = 0; d < 3; ++d) {
        if (grid[d] == 0 || block[d] == 0) {
            return k + format("zero launch dimension: grid (%u,%u,%u), block (%u,%u,%u)", grid[0], grid[1],
                              grid[2], block[0], block[1], block[2]);
        }
    }
    if (block[0] > 1024 || block[1] > 1024 || block[2] > 64) {
        return k + format("block (%u,%u,%u) exceeds the maximum block dimensions (1024,1024,64)", block[0],
                          block[1], block[2]);
    }
    std::uint64_t threads = (std::uint64_t)block[0] * block[1] * block[2];
    if (threads > kMaxThreads) {
        return k + format("block (%u,%u,%u) has %llu threads, more than the maximum of %u per block", block[0],
                          block[1], block[2], (unsigned long long)threads, kMaxThreads);
    }
    if (grid[0] > 2147483647u || grid[1] > 65535 || grid[2] > 65535) {
        return k + format("grid (%u,%u,%u) exceeds the maximum grid dimensions (2147483647,65535,65535)", grid[0],
                          grid[1], grid[2]);
    }
    if (shared_bytes > kMaxSharedBytes) {
        return k + format("%u bytes of dynamic shared memory requested, more than the %zu bytes a block may use",
                          shared_bytes, kMaxSharedBytes);
    }
    return std::string();
}

void write_error(char* out, std::size_t out_len, const std::string& message) {
    if (out == nullptr || out_len == 0) return;
    std::size_t n = std::min(out_len - 1, message.size());
    std::memcpy(out, message.data(), n);
    out[n] = '\0';
}

}  // namespace

// ------------------------------------------------------------------------------------------
// Called from kernel code.
// ------------------------------------------------------------------------------------------
bool register_kernel(const char* name, GenericFn fn, Invoker invoker, const std::size_t* param_sizes,
                     std::size_t param_count) {
    registry().push_back(Kernel{name, fn, invoker, std::vector<std::size_t>(param_sizes, param_sizes + param_count)});
    return true;
}

void fault(const char* message) {
    Launch* launch = t_launch;
    if (launch == nullptr || launch->current == nullptr) {
        std::fprintf(stderr, "cupool emulator: %s outside a launch\n", message);
        std::abort();
    }
    fail_current(*launch, where(*launch) + ": " + message);
}

void check_global_access(const void* address, std::size_t bytes, bool is_write) {
    Launch* launch = t_launch;
    if (launch == nullptr || launch->current == nullptr) return;  // host code: nothing to check
    std::uint64_t a = reinterpret_cast<std::uintptr_t>(address);
    const char* access = is_write ? "write" : "read";
    for (std::size_t i = 0; i < launch->buffer_count; ++i) {
        const CupoolEmuBuffer& b = launch->buffers[i];
        if (a < b.base || a >= b.base + b.len) continue;
        std::uint64_t offset = a - b.base;
        std::uint64_t element = bytes ? offset / bytes : offset;
        if (a + bytes > b.base + b.len) {
            fail_current(*launch, where(*launch) + format(": %s of %zu bytes at byte offset %llu (element %llu) of "
                                                          "%s %u runs past its end (%llu bytes)",
                                                          access, bytes, (unsigned long long)offset,
                                                          (unsigned long long)element, kind_name(b.kind), b.index,
                                                          (unsigned long long)b.len));
        }
        if (is_write && !b.writable) {
            fail_current(*launch, where(*launch) + format(": write of %zu bytes into read-only %s %u at byte offset "
                                                          "%llu (element %llu)",
                                                          bytes, kind_name(b.kind), b.index,
                                                          (unsigned long long)offset, (unsigned long long)element));
        }
        if ((bytes == 2 || bytes == 4 || bytes == 8 || bytes == 16) && a % bytes != 0) {
            fail_current(*launch, where(*launch) + format(": misaligned %s of %zu bytes at byte offset %llu of %s %u "
                                                          "(address not a multiple of %zu)",
                                                          access, bytes, (unsigned long long)offset,
                                                          kind_name(b.kind), b.index, bytes));
        }
        return;
    }
    // Outside every buffer: describe it from the nearest buffer, usually the one just overrun.
    const CupoolEmuBuffer* nearest = nullptr;
    std::uint64_t best = ~0ull;
    for (std::size_t i = 0; i < launch->buffer_count; ++i) {
        const CupoolEmuBuffer& b = launch->buffers[i];
        std::uint64_t distance = a >= b.base + b.len ? a - (b.base + b.len) : b.base - a;
        if (distance < best) {
            best = distance;
            nearest = &b;
        }
    }
    std::string message = where(*launch) + format(": %s of %zu bytes outside every buffer (no buffer)", access, bytes);
    if (nearest != nullptr) {
        long long offset = (long long)(a - nearest->base);
        long long element = bytes ? offset / (long long)bytes : offset;
        message += format(": byte offset %lld (element %lld) from the start of %s %u, which is %llu bytes long",
                          offset, element, kind_name(nearest->kind), nearest->index,
                          (unsigned long long)nearest->len);
    }
    fail_current(*launch, message);
}

std::uint64_t warp_collective(WarpOp op, unsigned int mask, std::uint64_t value, int lane_arg, int width,
                              const char* what) {
    Launch* launch = t_launch;
    if (launch == nullptr || launch->current == nullptr) fault(what);
    Fiber& self = *launch->current;
    if (launch->threads % 32 != 0) {
        fail_current(*launch, where(*launch) + format(": %s in a block of %u threads, not a multiple of the warp "
                                                      "size 32 (the last warp is partial)",
                                                      what, launch->threads));
    }
    unsigned lane = self.linear % 32;
    if (!((mask >> lane) & 1u)) {
        fail_current(*launch, where(*launch) + format(": %s with mask 0x%08x, which does not include the calling "
                                                      "lane %u",
                                                      what, mask, lane));
    }
    if (width <= 0 || width > 32 || (width & (width - 1)) != 0) {
        fail_current(*launch, where(*launch) + format(": %s with width %d (must be a power of two up to 32)", what,
                                                      width));
    }
    self.op = op;
    self.mask = mask;
    self.value = value;
    self.lane_arg = lane_arg;
    self.width = width;
    self.what = what;
    self.state = FiberState::AtWarpOp;
    yield_to_scheduler(*launch);
    return self.result;
}

int block_barrier(BlockOp op, int predicate) {
    Launch* launch = t_launch;
    if (launch == nullptr || launch->current == nullptr) fault("__syncthreads");
    Fiber& self = *launch->current;
    self.op = op;
    self.value = predicate != 0;
    self.state = FiberState::AtBlockBarrier;
    yield_to_scheduler(*launch);
    return (int)self.result;
}

}  // namespace cupool_emu

// ----------------------------------------------------------------------------------------------
// C ABI (src/emulator/mod.rs).
// ----------------------------------------------------------------------------------------------
using namespace cupool_emu;

extern "C" {

// Runs kernel `name` over the grid. params[i] points at argument i's bytes (param_sizes[i] of
// them). Returns 0 on success; otherwise 1 and a message in `error` (always NUL-terminated).
int cupool_emu_launch(const char* name, const std::uint32_t grid[3], const std::uint32_t block[3],
                      std::uint32_t shared_bytes, void** params, const std::uint64_t* param_sizes,
                      std::uint32_t param_count, const CupoolEmuBuffer* buffers, std::uint32_t buffer_count,
                      char* error, std::size_t error_len) {
    cupool_emu_link_all_kernels();
    const Kernel* kernel = find_kernel(name);
    if (kernel == nullptr) {
        write_error(error, error_len, std::string("no kernel named ") + name + " is compiled into the emulator");
        return 1;
    }
    std::string config = check_config(name, grid, block, shared_bytes);
    if (!config.empty()) {
        write_error(error, error_len, config);
        return 1;
    }
    if (param_count != kernel->param_sizes.size()) {
        write_error(error, error_len, format("kernel %s takes %zu arguments, the launch passes %u", name,
                                             kernel->param_sizes.size(), param_count));
        return 1;
    }
    for (std::uint32_t i = 0; i < param_count; ++i) {
        if (param_sizes[i] != kernel->param_sizes[i]) {
            write_error(error, error_len, format("kernel %s: argument %u is %zu bytes, the launch passes %llu", name,
                                                 i, kernel->param_sizes[i], (unsigned long long)param_sizes[i]));
            return 1;
        }
    }
    if (t_launch != nullptr) {
        write_error(error, error_len, std::string("kernel ") + name + ": launched from inside a kernel");
        return 1;
    }
    {
        std::lock_guard<std::mutex> lock(counts_mutex());
        launch_counts()[kernel->name] += 1;
    }

    Launch launch;
    launch.kernel = kernel;
    launch.params = params;
    launch.buffers = buffers;
    launch.buffer_count = buffer_count;
    launch.shared_bytes = shared_bytes;
    launch.threads = block[0] * block[1] * block[2];
    launch.fibers.resize(launch.threads);
    if (!t_stacks.ensure(launch.threads)) {
        write_error(error, error_len, std::string("kernel ") + name + ": could not map fiber stacks");
        return 1;
    }
    t_launch = &launch;
    gridDim = uint3{grid[0], grid[1], grid[2]};
    blockDim = uint3{block[0], block[1], block[2]};
    bool ok = true;
    for (std::uint32_t z = 0; ok && z < grid[2]; ++z) {
        for (std::uint32_t y = 0; ok && y < grid[1]; ++y) {
            for (std::uint32_t x = 0; ok && x < grid[0]; ++x) {
                blockIdx = uint3{x, y, z};
                ok = run_block(launch);
            }
        }
    }
    t_launch = nullptr;
    if (!ok) {
        write_error(error, error_len, launch.error);
        return 1;
    }
    return 0;
}

std::uint32_t cupool_emu_kernel_count(void) {
    cupool_emu_link_all_kernels();
    return (std::uint32_t)registry().size();
}

// The name of registered kernel `index` (NUL-terminated, static), or null past the end.
const char* cupool_emu_kernel_name(std::uint32_t index) {
    if (index >= registry().size()) return nullptr;
    return registry()[index].name.c_str();
}

std::uint64_t cupool_emu_launch_count(const char* name) {
    std::lock_guard<std::mutex> lock(counts_mutex());
    auto it = launch_counts().find(name);
    return it == launch_counts().end() ? 0 : it->second;
}

void cupool_emu_reset_launch_counts(void) {
    std::lock_guard<std::mutex> lock(counts_mutex());
    launch_counts().clear();
}

}  // extern "C"
