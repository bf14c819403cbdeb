#include "gid_check.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <cstring>
#include <string>

namespace ramshift::transport::rdma {
namespace {

// "::ffff:10.9.0.1 (RoCE v2)", or the index alone when the device will not say.
std::string describe_gid(ibv_context* ctx, uint8_t port, uint32_t index) {
  ibv_gid_entry e{};
  if (ibv_query_gid_ex(ctx, port, index, &e, 0) != 0) return fmt::format("index {}", index);
  char text[INET6_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET6, e.gid.raw, text, sizeof text);
  const char* type = e.gid_type == IBV_GID_TYPE_ROCE_V2   ? "RoCE v2"
                     : e.gid_type == IBV_GID_TYPE_ROCE_V1 ? "RoCE v1"
                                                          : "IB";
  return fmt::format("{} ({})", text, type);
}

}  // namespace

Status check_gid_index(ibv_qp* qp, uint8_t port, int want, uint32_t queue) {
  if (want < 0) return Status::ok();
  ibv_qp_attr attr{};
  ibv_qp_init_attr init{};
  if (int rc = ibv_query_qp(qp, &attr, IBV_QP_AV, &init); rc != 0)
    return Status(ErrorCode::kIo,
                  fmt::format("--rdma-gid-index: ibv_query_qp: {}", std::strerror(rc)), rc);
  const uint32_t got = attr.ah_attr.grh.sgid_index;
  if (got == static_cast<uint32_t>(want)) return Status::ok();
  ibv_port_attr pa{};
  const int table = ibv_query_port(qp->context, port, &pa) == 0 ? pa.gid_tbl_len : 0;
  const std::string dev = ibv_get_device_name(qp->context->device);
  if (want >= table)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("--rdma-gid-index {}: {} port {} has {} GIDs (0..{})", want, dev,
                              port, table, table - 1));
  return Status(
      ErrorCode::kInvalidArgument,
      fmt::format("queue {} uses GID {} of {} port {}, {}, not --rdma-gid-index {}, {}: rdma_cm "
                  "picks the GID from the address and the port's RoCE mode; use an address "
                  "of GID {} (--rdma-source-ip, the listen address) or its RoCE mode "
                  "(cma_roce_mode -d {} -p {} -m 1|2)",
                  queue, got, dev, port, describe_gid(qp->context, port, got), want,
                  describe_gid(qp->context, port, static_cast<uint32_t>(want)), want, dev, port));
}

}  // namespace ramshift::transport::rdma
