// What the registry knows of rdma:// whether or not this binary carries verbs: its scheme and
// static traits. registration.cc adds the factories; absent.cc, built instead when the verbs
// libraries are missing or RAMSHIFT_RDMA=OFF, the reason.
#pragma once

#include "ramshift/transport/registry.h"

namespace ramshift::transport::rdma {

inline Backend describe_backend() {
  Backend b;
  b.scheme = "rdma";
  b.summary =
      "verbs (libibverbs + librdmacm): RC queue pairs, raw pages by RDMA WRITE, post-copy "
      "faults by RDMA READ";
  b.traits.one_sided_write = true;
  b.traits.remote_read = true;  // post-copy faults: one READ of the source's memory
  // 1 MiB: every batch over rdma:// costs a control message, its completions and a wake-up
  // of the receiver, whatever its size: 12,000 of each per second at 100 Gbit/s instead of
  // 48,000 with 256 KiB. In the soft-RoCE VM, CPU-bound in rxe, 1 MiB and 256 KiB were within
  // noise of each other (docs/benchmarks/README.md, RDMA section).
  b.traits.preferred_batch_bytes = 1u << 20;
  return b;
}

}  // namespace ramshift::transport::rdma
