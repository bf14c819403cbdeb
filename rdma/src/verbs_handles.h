// RAII owners for every verbs and rdma_cm object the backend creates.
//
// Destruction order matters to verbs (a PD outlives its MRs and QPs, a CQ outlives its QP,
// a completion channel outlives its CQ, an event channel outlives its ids). Owners are
// declared in the classes that hold them so that C++'s reverse-declaration destruction
// order is the order verbs needs; each class says so where it declares them.
#pragma once

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <memory>

namespace ramshift::transport::rdma {

struct EventChannelDeleter {
  void operator()(rdma_event_channel* c) const { rdma_destroy_event_channel(c); }
};
// An id owns its QP when one was created with rdma_create_qp: destroy the QP first.
struct CmIdDeleter {
  void operator()(rdma_cm_id* id) const {
    if (id->qp) rdma_destroy_qp(id);
    rdma_destroy_id(id);
  }
};
struct PdDeleter {
  void operator()(ibv_pd* pd) const { ibv_dealloc_pd(pd); }
};
struct CompChannelDeleter {
  void operator()(ibv_comp_channel* c) const { ibv_destroy_comp_channel(c); }
};
struct CqDeleter {
  void operator()(ibv_cq* cq) const { ibv_destroy_cq(cq); }
};
struct MrDeleter {
  void operator()(ibv_mr* mr) const { ibv_dereg_mr(mr); }
};
// Deallocating a window invalidates its key at once, bound or not. A window bound to an MR
// keeps that MR from being deregistered, so it goes first; a type-2 window also holds the QP
// it was bound on, so windows go before their queues.
struct MwDeleter {
  void operator()(ibv_mw* mw) const { ibv_dealloc_mw(mw); }
};
struct DeviceListDeleter {
  void operator()(ibv_device** list) const { ibv_free_device_list(list); }
};

using EventChannel = std::unique_ptr<rdma_event_channel, EventChannelDeleter>;
using CmId = std::unique_ptr<rdma_cm_id, CmIdDeleter>;
using ProtectionDomain = std::unique_ptr<ibv_pd, PdDeleter>;
using CompletionChannel = std::unique_ptr<ibv_comp_channel, CompChannelDeleter>;
using CompletionQueue = std::unique_ptr<ibv_cq, CqDeleter>;
using MemoryRegion = std::unique_ptr<ibv_mr, MrDeleter>;
using MemoryWindow = std::unique_ptr<ibv_mw, MwDeleter>;
using DeviceList = std::unique_ptr<ibv_device*, DeviceListDeleter>;

// The PD is shared by every queue of a connection and by its guest-memory registrations.
using SharedPd = std::shared_ptr<ibv_pd>;
inline SharedPd make_shared_pd(ibv_pd* pd) { return SharedPd(pd, PdDeleter{}); }

}  // namespace ramshift::transport::rdma
