#include "async_events.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "ramshift/base/log.h"
#include "ramshift/base/unique_fd.h"

namespace ramshift::transport::rdma {
namespace {

struct Watched {
  ibv_context* ctx;
  ibv_qp* qp;
  ibv_cq* cq;
  uint8_t port;
  uint32_t queue_index;
  AsyncFailure on_failure;
  PortChange on_port;  // may be empty
};

// One reader thread per device context, alive while the context has watched queues.
struct ContextReader {
  UniqueFd wake;
  std::thread thread;
};

class Router {
 public:
  static Router& instance() {
    static Router r;  // never destroyed: watches may outlive static destruction order
    return r;
  }

  uint64_t add(Watched w) {
    std::lock_guard lock(mu_);
    uint64_t id = ++next_id_;
    ibv_context* ctx = w.ctx;
    watched_.emplace(id, std::move(w));
    if (!readers_.count(ctx)) {
      // Shared by every user of the context in this process; the reader polls it.
      int fl = fcntl(ctx->async_fd, F_GETFL);
      fcntl(ctx->async_fd, F_SETFL, fl | O_NONBLOCK);
      auto r = std::make_unique<ContextReader>();
      r->wake.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
      int wake_fd = r->wake.get();
      r->thread = std::thread([this, ctx, wake_fd] { read_events(ctx, wake_fd); });
      readers_.emplace(ctx, std::move(r));
    }
    return id;
  }

  void remove(ibv_context* ctx, uint64_t id) {
    std::unique_ptr<ContextReader> finished;
    {
      std::lock_guard lock(mu_);
      watched_.erase(id);
      for (auto& [_, w] : watched_)
        if (w.ctx == ctx) return;
      auto it = readers_.find(ctx);
      if (it == readers_.end()) return;
      finished = std::move(it->second);
      readers_.erase(it);
    }
    // Joined outside the lock: the reader takes it to route an event.
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(finished->wake.get(), &one, sizeof one);
    finished->thread.join();
  }

 private:
  void read_events(ibv_context* ctx, int wake_fd) {
    for (;;) {
      pollfd fds[2] = {{ctx->async_fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        log::warn("rdma: polling for async events failed: {}", std::strerror(errno));
        return;
      }
      if (fds[1].revents & POLLIN) return;
      ibv_async_event ev{};
      while (ibv_get_async_event(ctx, &ev) == 0) {
        route(ctx, ev);
        ibv_ack_async_event(&ev);  // after routing: a watch's destructor may be waiting
      }
    }
  }

  void route(ibv_context* ctx, const ibv_async_event& ev) {
    std::lock_guard lock(mu_);
    bool any = false;
    for (auto& [_, w] : watched_) {
      if (w.ctx != ctx) continue;
      bool mine = false;
      switch (ev.event_type) {
        case IBV_EVENT_CQ_ERR:
          mine = ev.element.cq == w.cq;
          break;
        case IBV_EVENT_PORT_ERR:
        case IBV_EVENT_PORT_ACTIVE:
        case IBV_EVENT_LID_CHANGE:
        case IBV_EVENT_PKEY_CHANGE:
        case IBV_EVENT_GID_CHANGE:
        case IBV_EVENT_SM_CHANGE:
        case IBV_EVENT_CLIENT_REREGISTER:
          mine = ev.element.port_num == w.port;
          break;
        case IBV_EVENT_DEVICE_FATAL:
          mine = true;
          break;
        default:  // the QP events
          mine = ev.element.qp == w.qp;
          break;
      }
      if (!mine) continue;
      any = true;
      if (w.on_port &&
          (ev.event_type == IBV_EVENT_PORT_ERR || ev.event_type == IBV_EVENT_PORT_ACTIVE)) {
        if (ev.event_type == IBV_EVENT_PORT_ACTIVE)
          log::info("rdma queue {}: port {} is active again", w.queue_index, w.port);
        else
          log::warn("rdma queue {}: port {} went down; waiting up to the peer timeout for it",
                    w.queue_index, w.port);
        w.on_port(ev.event_type == IBV_EVENT_PORT_ACTIVE);
        continue;
      }
      Status s = describe_async_event(ev.event_type, w.queue_index, w.port);
      if (s.is_ok()) {
        log::debug("rdma queue {}: async event {}", w.queue_index,
                   ibv_event_type_str(ev.event_type));
        continue;
      }
      log::debug("rdma: {}", s.message());
      w.on_failure(std::move(s));
    }
    if (!any)
      log::debug("rdma: async event {} for no watched queue", ibv_event_type_str(ev.event_type));
  }

  std::mutex mu_;
  uint64_t next_id_ = 0;
  std::map<uint64_t, Watched> watched_;
  std::map<ibv_context*, std::unique_ptr<ContextReader>> readers_;
};

}  // namespace

Status describe_async_event(ibv_event_type event, uint32_t queue_index, uint8_t port) {
  const char* name = ibv_event_type_str(event);
  switch (event) {
    case IBV_EVENT_QP_ACCESS_ERR:
      return Status(ErrorCode::kProtocol,
                    fmt::format("rdma queue {}: the peer wrote outside the memory registered for "
                                "it ({}): wrong key or range",
                                queue_index, name));
    case IBV_EVENT_QP_REQ_ERR:
      return Status(ErrorCode::kProtocol,
                    fmt::format("rdma queue {}: the peer sent a request this queue cannot carry "
                                "out ({})",
                                queue_index, name));
    case IBV_EVENT_QP_FATAL:
    case IBV_EVENT_PATH_MIG_ERR:
      return Status(ErrorCode::kIo, fmt::format("rdma queue {}: the device failed the queue "
                                                "pair ({})",
                                                queue_index, name));
    case IBV_EVENT_CQ_ERR:
      return Status(ErrorCode::kIo,
                    fmt::format("rdma queue {}: its completion queue failed ({}, an overrun)",
                                queue_index, name));
    case IBV_EVENT_PORT_ERR:
      return Status(ErrorCode::kDisconnected,
                    fmt::format("rdma queue {}: port {} of the RDMA device went down ({}): the "
                                "link is lost",
                                queue_index, port, name));
    case IBV_EVENT_DEVICE_FATAL:
      return Status(ErrorCode::kIo,
                    fmt::format("rdma queue {}: the RDMA device failed ({}); reset it or use "
                                "another transport",
                                queue_index, name));
    default:
      return Status::ok();
  }
}

AsyncEventWatch::AsyncEventWatch(ibv_context* ctx, ibv_qp* qp, ibv_cq* cq, uint8_t port,
                                 uint32_t queue_index, AsyncFailure on_failure, PortChange on_port)
    : ctx_(ctx) {
  id_ = Router::instance().add(
      {ctx, qp, cq, port, queue_index, std::move(on_failure), std::move(on_port)});
}

AsyncEventWatch::~AsyncEventWatch() {
  if (ctx_) Router::instance().remove(ctx_, id_);
}

}  // namespace ramshift::transport::rdma
