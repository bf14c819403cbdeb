// CPU affinity of the engine's queue threads (`--cpus LIST` on send and receive): perftest's
// `--cpu`/taskset habit, so a migration's queues stay on the cores near the NIC and off the
// guest's. Linux CPU list syntax, as taskset -c and /proc/*/status Cpus_allowed_list write it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ramshift/base/status.h"

namespace ramshift {

// "0-3,8,10-11" -> {0, 1, 2, 3, 8, 10, 11} (sorted, no duplicates). kInvalidArgument, naming
// `flag`, for bad syntax and for a CPU this process may not run on (taskset, cpusets).
Result<std::vector<uint32_t>> parse_cpu_list(std::string_view text, std::string_view flag);

// The CPUs this process may run on, as a list ("0-1").
std::string allowed_cpu_list();

// Pins the calling thread, the engine's queue `queue`, to cpus[queue % cpus.size()] and names
// it "rs-queue-N" (top -H, /proc/PID/task/TID/comm); nothing when `cpus` is empty. A failure
// (the allowed set shrank since parsing) is logged once per thread and the thread runs on.
void pin_queue_thread(std::span<const uint32_t> cpus, uint32_t queue);

}  // namespace ramshift
