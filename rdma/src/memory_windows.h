// Type-2 memory windows: the one implementation of "a key that opens one piece of memory
// through one queue pair" for both users of this backend, an rdma:// connection's guest memory
// (rdma_connection.cc, one window per chunk and queue) and the QEMU library's READ pulls
// (page_pull.cc, one window per exposed mapping, bound on the connection's only queue pair).
//
// A type-2 window is allocated in a PD, then bound by a work request posted on a queue pair
// of that PD to [address, address + length) of a region registered with IBV_ACCESS_MW_BIND.
// The device then accepts its key only in requests that arrive on that queue pair, for the
// access the bind granted; deallocating the window (MemoryWindow's deleter) invalidates the
// key at once. The region's own key opens nothing when the region was registered without
// remote access flags.
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>
#include <string>

#include "ramshift/base/status.h"
#include "verbs_handles.h"

namespace ramshift::transport::rdma {

// One type-2 memory window to bind on a queue: [address, address + length) of `mr` (which
// was registered with IBV_ACCESS_MW_BIND), opened to the peer for `access`
// (IBV_ACCESS_REMOTE_WRITE or IBV_ACCESS_REMOTE_READ) under `rkey` (the window's key with
// the consumer's 8 bits chosen, ibv_inc_rkey).
struct WindowBind {
  ibv_mw* mw = nullptr;
  ibv_mr* mr = nullptr;
  uint64_t address = 0;
  uint64_t length = 0;
  unsigned access = 0;
  uint32_t rkey = 0;
};

// Whether the device binds type-2 memory windows (type 2A or 2B in its capabilities).
inline bool device_has_windows(ibv_context* ctx) {
  ibv_device_attr attr{};
  if (ibv_query_device(ctx, &attr) != 0) return false;
  return attr.max_mw > 0 && (attr.device_cap_flags &
                             (IBV_DEVICE_MEM_WINDOW_TYPE_2A | IBV_DEVICE_MEM_WINDOW_TYPE_2B)) != 0;
}

// Why the peer gets region keys rather than windows on a device `ctx` when `wanted` says
// whether windows were asked for (--rdma-memory-windows); empty when windows are used.
inline std::string why_no_windows(ibv_context* ctx, bool wanted) {
  if (!wanted) return "--rdma-memory-windows false was given";
  if (!device_has_windows(ctx))
    return std::string(ibv_get_device_name(ctx->device)) + " has no type-2 memory windows";
  return {};
}

// Allocates a type-2 window in `pd` over the whole of `mr` (into `owner`, which deallocates it)
// and describes its bind with `access` and a fresh key byte: a key seen before never opens it.
inline Result<WindowBind> new_window(ibv_pd* pd, ibv_mr* mr, unsigned access, MemoryWindow& owner) {
  owner.reset(ibv_alloc_mw(pd, IBV_MW_TYPE_2));
  if (!owner) return errno_status(ErrorCode::kIo, "rdma: ibv_alloc_mw", errno);
  return WindowBind{owner.get(), mr,     reinterpret_cast<uint64_t>(mr->addr),
                    mr->length,  access, ibv_inc_rkey(owner->rkey)};
}

// Fills `wr` to bind `b`; unsignaled, unchained, numbered by the caller.
inline void fill_bind_request(const WindowBind& b, ibv_send_wr& wr) {
  wr = ibv_send_wr{};
  wr.opcode = IBV_WR_BIND_MW;
  wr.bind_mw.mw = b.mw;
  wr.bind_mw.rkey = b.rkey;
  wr.bind_mw.bind_info.mr = b.mr;
  wr.bind_mw.bind_info.addr = b.address;
  wr.bind_mw.bind_info.length = b.length;
  wr.bind_mw.bind_info.mw_access_flags = b.access;
}

}  // namespace ramshift::transport::rdma
