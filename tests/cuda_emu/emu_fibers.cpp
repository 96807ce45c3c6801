// cuda-emu: the threads of a block as fibers, switched only where CUDA threads synchronise:
// __syncthreads() and warp shuffles. Blocks run one after the other, in grid order or reversed.
//
// A decode step of GPT-2 switches fibers tens of millions of times (every lane of every warp
// shuffle), so on x86-64 the switch is a few instructions of our own (callee-saved registers and
// the stack pointer) rather than swapcontext, which also saves the signal mask with a system call.
#include <pthread.h>
#include <sys/mman.h>
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "emu_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifdef EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

uint3 threadIdx;
uint3 blockIdx;
dim3 blockDim;
dim3 gridDim;

namespace emu {
namespace {

#ifdef EMU_ASAN
constexpr size_t kStackBytes = 512 * 1024;  // ASan's redzones make frames larger
#else
constexpr size_t kStackBytes = 128 * 1024;
#endif

#if defined(__x86_64__)
// switch_stack(&save, to): pushes the System V callee-saved registers, stores the stack pointer
// in *save, loads `to` and pops the registers saved there; `ret` then continues that fiber.
extern "C" void emu_switch_stack(void** save, void* to);
asm(R"(
  .text
  .globl emu_switch_stack
  .type emu_switch_stack, @function
emu_switch_stack:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_switch_stack, .-emu_switch_stack
  .section .note.GNU-stack,"",@progbits
  .text
)");
struct Context {
  void* sp = nullptr;
};
void switch_context(Context* from, Context* to) { emu_switch_stack(&from->sp, to->sp); }
// A new fiber's stack: six zero registers for emu_switch_stack to pop, then `entry` as the
// return address, placed so that `entry` starts with the stack aligned as after a call.
void make_context(Context* c, char* stack, size_t bytes, void (*entry)()) {
  auto top = reinterpret_cast<uintptr_t>(stack + bytes) & ~uintptr_t(15);
  auto* slot = reinterpret_cast<void**>(top);
  *--slot = nullptr;                              // entry's own (never used) return address
  *--slot = reinterpret_cast<void*>(entry);
  for (int i = 0; i < 6; ++i) *--slot = nullptr;  // rbp, rbx, r12-r15
  c->sp = slot;
}
#else
struct Context {
  ucontext_t uc;
};
void switch_context(Context* from, Context* to) { swapcontext(&from->uc, &to->uc); }
void make_context(Context* c, char* stack, size_t bytes, void (*entry)()) {
  getcontext(&c->uc);
  c->uc.uc_stack.ss_sp = stack;
  c->uc.uc_stack.ss_size = bytes;
  c->uc.uc_link = nullptr;
  makecontext(&c->uc, entry, 0);
}
#endif

enum class State { Ready, AtBarrier, AtShuffle, Done };

struct Fiber {
  Context context;
  char* stack = nullptr;
  State state = State::Ready;
  uint3 index{0, 0, 0};
  int linear = 0;
  unsigned shuffles = 0;  // shuffles done: selects the exchange buffer (double-buffered)
};

constexpr int kScheduler = -1;  // transfer()'s name for the scheduler (the OS thread's own stack)

struct Block {
  std::vector<Fiber> fibers;  // stacks are kept and reused by later blocks
  int n = 0;                  // threads in the running block
  Context scheduler;
  int current = kScheduler;
  const std::function<void()>* body = nullptr;
  std::vector<uint64_t> exchange[2];  // shuffle values, by linear thread id
  std::vector<int> arrived;           // per warp: lanes at the current shuffle
  std::unique_ptr<unsigned char[]> dynamic_smem;  // exactly the launch's bytes: ASan sees overruns
  unsigned launch_count = 0;
#ifdef EMU_ASAN
  void* scheduler_stack = nullptr;
  size_t scheduler_stack_size = 0;
#endif
};
Block g_block;

Fiber& current_fiber() { return g_block.fibers[size_t(g_block.current)]; }

// Switches from the running fiber (or the scheduler) to fiber `to` (or the scheduler); returns
// when something switches back. `finished`: the running fiber is done and never comes back.
void transfer(int to, bool finished = false) {
  const int from = g_block.current;
  Context* from_context = from == kScheduler ? &g_block.scheduler : &g_block.fibers[size_t(from)].context;
  Context* to_context = to == kScheduler ? &g_block.scheduler : &g_block.fibers[size_t(to)].context;
  g_block.current = to;
  if (to != kScheduler) threadIdx = g_block.fibers[size_t(to)].index;
#ifdef EMU_ASAN
  void* fake_stack = nullptr;
  if (to == kScheduler)
    __sanitizer_start_switch_fiber(finished ? nullptr : &fake_stack, g_block.scheduler_stack,
                                   g_block.scheduler_stack_size);
  else
    __sanitizer_start_switch_fiber(finished ? nullptr : &fake_stack, g_block.fibers[size_t(to)].stack, kStackBytes);
#endif
  switch_context(from_context, to_context);
#ifdef EMU_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
  (void)finished;
}

void fiber_main() {
#ifdef EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
  (*g_block.body)();
  current_fiber().state = State::Done;
  transfer(kScheduler, true);
  std::abort();  // a finished fiber is never resumed
}

// A waiting fiber hands the OS thread to the next ready lane of its warp (so a warp-wide
// shuffle costs one switch per lane), else back to the scheduler.
void wait_in_warp() {
  const int self = g_block.current, base = self & ~31;
  for (int k = 1; k < 32; ++k) {
    const int j = base + ((self + k) & 31);
    if (j < g_block.n && g_block.fibers[size_t(j)].state == State::Ready) {
      transfer(j);
      return;
    }
  }
  transfer(kScheduler);
}

void prepare_fibers(int n) {
  auto& fibers = g_block.fibers;
  while (int(fibers.size()) < n) {
    Fiber f;
    void* p = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      std::fprintf(stderr, "cuda-emu: cannot map a fiber stack\n");
      std::abort();
    }
    f.stack = static_cast<char*>(p);
    fibers.push_back(f);
  }
  for (int i = 0; i < n; ++i) {
    Fiber& f = fibers[size_t(i)];
#ifdef EMU_ASAN
    ASAN_UNPOISON_MEMORY_REGION(f.stack, kStackBytes);  // frames left poisoned by the last block
#endif
    make_context(&f.context, f.stack, kStackBytes, fiber_main);
    f.state = State::Ready;
    f.shuffles = 0;
    f.linear = i;
    f.index = uint3{unsigned(i) % blockDim.x, (unsigned(i) / blockDim.x) % blockDim.y,
                    unsigned(i) / (blockDim.x * blockDim.y)};
  }
}

// Runs one block to completion; false (with `error`) when its threads cannot all finish.
bool run_block(bool reverse, std::string* error) {
  const int n = g_block.n;
  prepare_fibers(n);
  std::fill(g_block.arrived.begin(), g_block.arrived.end(), 0);
  auto& fibers = g_block.fibers;
  for (;;) {
    // Run ready threads until none is left (a shuffle may release lanes this pass went by).
    for (bool ran = true; ran;) {
      ran = false;
      for (int k = 0; k < n; ++k) {
        const int i = reverse ? n - 1 - k : k;
        if (fibers[size_t(i)].state == State::Ready) {
          transfer(i);
          ran = true;
        }
      }
    }
    // Nothing is ready: every thread has finished or waits at a barrier or a shuffle.
    int live = 0, at_barrier = 0;
    for (int i = 0; i < n; ++i) {
      live += fibers[size_t(i)].state != State::Done;
      at_barrier += fibers[size_t(i)].state == State::AtBarrier;
    }
    if (live == 0) return true;
    if (at_barrier == live) {
      for (int i = 0; i < n; ++i)
        if (fibers[size_t(i)].state == State::AtBarrier) fibers[size_t(i)].state = State::Ready;
      continue;
    }
    // Lanes wait at a shuffle that can never complete (a complete one releases its warp).
    for (int w = 0; w * 32 < n; ++w) {
      const int lo = w * 32, hi = std::min(n, lo + 32);
      int waiting = 0;
      for (int i = lo; i < hi; ++i) waiting += fibers[size_t(i)].state == State::AtShuffle;
      if (waiting > 0 && hi - lo < 32) {
        *error = "warp " + std::to_string(w) + " has " + std::to_string(hi - lo) +
                 " threads and shuffles with a full mask (blockDim must be a multiple of 32)";
        return false;
      }
    }
    *error = std::to_string(at_barrier) + " threads wait at __syncthreads() and " + std::to_string(live - at_barrier) +
             " at a warp shuffle that the rest of their warp never reaches (exited, or waiting at the barrier):"
             " divergent synchronisation, a hang or undefined behaviour on a GPU";
    return false;
  }
}

}  // namespace

bool run_grid(const LaunchSpec& spec, const std::function<void()>& body, std::string* error) {
  gridDim = spec.grid;
  blockDim = spec.block;
  const int n = int(spec.block.x * spec.block.y * spec.block.z);
  g_block.n = n;
  g_block.body = &body;
  g_block.exchange[0].assign(size_t(n) + 32, 0);
  g_block.exchange[1].assign(size_t(n) + 32, 0);
  g_block.arrived.assign(size_t(n + 31) / 32, 0);
#ifdef EMU_ASAN
  if (!g_block.scheduler_stack) {  // the OS thread's stack, for ASan's fiber switch annotations
    pthread_attr_t attr;
    pthread_getattr_np(pthread_self(), &attr);
    pthread_attr_getstack(&attr, &g_block.scheduler_stack, &g_block.scheduler_stack_size);
    pthread_attr_destroy(&attr);
  }
#endif
  // Alternate the order in which ready threads run, so that a missing barrier shows in one of
  // the two orders (a thread reading what another has not written yet); and the order of the
  // blocks, which a GPU does not promise either (a block that relies on another having run
  // first fails in one of them).
  const bool reverse = (g_block.launch_count++ & 1u) != 0;
  const auto nth = [reverse](unsigned i, unsigned n) { return reverse ? n - 1 - i : i; };
  for (unsigned zi = 0; zi < spec.grid.z; ++zi)
    for (unsigned yi = 0; yi < spec.grid.y; ++yi)
      for (unsigned xi = 0; xi < spec.grid.x; ++xi) {
        const unsigned x = nth(xi, spec.grid.x), y = nth(yi, spec.grid.y), z = nth(zi, spec.grid.z);
        blockIdx = uint3{x, y, z};
        g_block.dynamic_smem.reset(new unsigned char[spec.smem ? spec.smem : 1]);
        std::memset(g_block.dynamic_smem.get(), 0xFF, spec.smem);
        if (!run_block(reverse, error)) {
          *error = "block (" + std::to_string(x) + ", " + std::to_string(y) + ", " + std::to_string(z) + "): " + *error;
          return false;
        }
      }
  g_block.body = nullptr;
  return true;
}

void* dynamic_shared_memory() { return g_block.dynamic_smem.get(); }

void syncthreads() {
  current_fiber().state = State::AtBarrier;
  transfer(kScheduler);
}

int lane_id() { return current_fiber().linear & 31; }

uint64_t shuffle(unsigned mask, uint64_t bits, int src_lane) {
  bool last = false;
  const uint64_t* slots = warp_exchange(mask, bits, &last);
  return slots[src_lane];
}

uint64_t* warp_exchange(unsigned mask, uint64_t bits, bool* last) {
  Fiber& f = current_fiber();
  if (mask != 0xffffffffu) {
    std::fprintf(stderr, "cuda-emu: a shuffle with mask %#x; only full-mask shuffles are emulated\n", mask);
    std::abort();
  }
  // Double-buffered exchange: a lane writes slot `shuffles % 2`; it can only write that slot
  // again after the next shuffle completed, by which time every lane has read this one.
  auto& slots = g_block.exchange[f.shuffles & 1u];
  ++f.shuffles;
  const int warp_base = f.linear & ~31;
  slots[size_t(f.linear)] = bits;
  int& arrived = g_block.arrived[size_t(f.linear >> 5)];
  *last = ++arrived == 32;
  if (*last) {  // the last lane releases the warp and goes on without a switch
    arrived = 0;
    for (int i = warp_base; i < warp_base + 32; ++i) g_block.fibers[size_t(i)].state = State::Ready;
  } else {
    f.state = State::AtShuffle;
    wait_in_warp();
  }
  return &slots[size_t(warp_base)];
}

}  // namespace emu
