// What the host allows the verbs backend: RDMA devices present, locked-memory budget.
// Each check returns a Status whose message says what is wrong and how to fix it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/transport/registry.h"

namespace ramshift::transport::rdma {

// Names of the RDMA devices verbs can open (e.g. "rxe0", "mlx5_0"); empty when none.
std::vector<std::string> device_names();

// Devices, ports, MTUs and RoCE v2 GIDs (verbs for the ports, sysfs for GID types), in the
// registry's generic form: a port's address is its first RoCE v2 GID with an IPv4 address.
std::vector<Device> describe_devices();

// kNotFound, "no RDMA device found; use tcp:// or load rdma_rxe ...", when there is none.
Status require_device();

// The IPv4 address of the first RDMA device's network interface (RoCE), e.g. "10.9.0.1":
// where `ramshift demo` listens. kNotFound when no device has one.
Result<std::string> device_address();

// Checks that `bytes` more can be pinned under RLIMIT_MEMLOCK (skipped with CAP_IPC_LOCK,
// which lifts the limit). `what` names the memory ("64 MiB of guest memory").
Status check_memlock(uint64_t bytes, const std::string& what);

// The Status for a registration that failed with `err`: for ENOMEM/EAGAIN/EPERM it explains
// the memlock limit against the size, otherwise the system error.
Status registration_error(int err, uint64_t bytes, const std::string& what);

}  // namespace ramshift::transport::rdma
