#include "pippy/runtime/cpu_memory.hpp"

#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include <malloc.h>

namespace pippy {
namespace {

// c10's CPU allocation with the size kept in a header before the data, so that the deleter can count the
// bytes back without a table and the context stays the data pointer (raw_allocate asserts that).
class counting_cpu_allocator final : public c10::Allocator {
public:
  static constexpr std::size_t header = 64; // keeps the data as aligned as c10's own allocations

  c10::DataPtr allocate(std::size_t n) override {
    if (n == 0)
      return {nullptr, nullptr, &release, c10::Device(c10::DeviceType::CPU)};
    auto* base = static_cast<char*>(c10::alloc_cpu(n + header));
    *reinterpret_cast<std::size_t*>(base) = n;
    bytes_.fetch_add(n, std::memory_order_relaxed);
    void* data = base + header;
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }

  static std::uint64_t bytes() { return bytes_.load(std::memory_order_relaxed); }

private:
  static void release(void* data) {
    if (data == nullptr)
      return;
    char* base = static_cast<char*>(data) - header;
    bytes_.fetch_sub(*reinterpret_cast<std::size_t*>(base), std::memory_order_relaxed);
    c10::free_cpu(base);
  }
  static inline std::atomic<std::uint64_t> bytes_{0};
};

bool user_tuned_malloc() {
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr || std::getenv("MALLOC_TRIM_THRESHOLD_") != nullptr)
    return true;
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  return tunables != nullptr && std::strstr(tunables, "glibc.malloc.") != nullptr;
}

// Both set: setting either one alone stops glibc's own adjustment of the other, and a fixed default
// trim threshold (128 KiB) or mmap threshold (128 KiB) gives the blocks back as before.
bool keep_freed_memory() {
#if defined(__GLIBC__)
  if (user_tuned_malloc())
    return false;
  return ::mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && ::mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
#else
  return false;
#endif
}

// When the runtime loads, after c10's default allocator (a shared library, loaded first): tensors made
// before main, the model's among them, are counted too. Never destroyed, as tensors may outlive main.
const bool keeps_freed = keep_freed_memory();
const bool counting_installed = [] {
  c10::SetCPUAllocator(new counting_cpu_allocator, /*priority=*/1);
  return true;
}();

} // namespace

std::uint64_t cpu_tensor_bytes() { return counting_cpu_allocator::bytes(); }

bool keeps_freed_memory() { return keeps_freed; }

std::uint64_t heap_bytes_in_use() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  const auto m = ::mallinfo2();
  return static_cast<std::uint64_t>(m.uordblks) + static_cast<std::uint64_t>(m.hblkhd);
#else
  return 0;
#endif
}

} // namespace pippy
