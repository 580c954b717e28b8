// ClusterConsumer: the store side of the cluster data path. Each of `consumers` threads loops:
// claim a batch from an ingest peer (segment.next, peers taken round-robin from the live view),
// read its segments (segment.read), merge them by ULID with duplicates dropped, replicate the
// merged records to `replication_factor` distinct live store nodes (encoded once into a segment
// file, which goes as is to the others with segment.replicate_file and is installed directly
// when this node is one of them; a copy that fails goes to another untried live store, alive ones
// first), then commit the batch on the ingester (segment.commit) once N copies are stored, or
// fail it back (segment.failed) when no N live stores took it. It pulls again at once while data
// waits and polls every idle_poll when none does.
//
// With fewer live store nodes than the replication factor nothing is claimed: data waits on the
// ingesters, oklog_store_replication_waiting is 1 and a warning is logged every 10 s.
//
// Threads: its own threads, talking to the loop through an RpcBridge (RPC calls and the peer
// view). Shutdown: Stop() (signals only, any thread), then close the bridge and the RpcClient so
// threads waiting on the loop wake with Cancelled, then Join() from a thread that is not the loop
// thread, or after the loop ended. A batch cut short stays claimed on its ingester until the
// pending timeout returns it to flushed.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/fs/disk_guard.h"
#include "common/metrics.h"
#include "rpc/rpc_bridge.h"
#include "segments/segment_file.h"
#include "segments/store_log.h"

namespace oklog {

struct ClusterPeers {
  std::vector<std::string> ingest;  // cluster addresses of live ingest nodes
  struct Store {
    std::string name, addr;
    bool is_self = false;
    bool suspect = false;  // live but not answering gossip: tried after every alive store
    bool full = false;     // gossips a full disk: tried last (it refuses replicas)
  };
  std::vector<Store> store;  // live store nodes
};

struct ClusterConsumerOptions {
  size_t consumers = 1;
  size_t replication_factor = 2;
  uint64_t max_batch_bytes = 32ull << 20;
  std::chrono::milliseconds idle_poll{100};
  std::chrono::milliseconds rpc_timeout{30000};
  // This store's disk guard (may be null): while it says full, this node consumes nothing (its
  // batches would need a local copy or a long way round); other stores take the data.
  DiskGuard* store_guard = nullptr;
  // Batches are cut at placement bucket boundaries (segments/holdings.h).
  uint64_t bucket_ms = 60'000;
};

class ClusterConsumer {
 public:
  // peers runs on the loop thread. store: where this node's own replicas go (may be null when
  // this node is no store node).
  static std::unique_ptr<ClusterConsumer> Start(rpc::RpcBridge* bridge, std::function<ClusterPeers()> peers,
                                                StoreLog* store, ClusterConsumerOptions options, Registry* metrics);
  ~ClusterConsumer();
  void Stop();  // signals every thread; returns at once
  void Join();  // Stop() and waits; never on the loop thread

 private:
  ClusterConsumer() = default;
  void Run(size_t index);
  // Consumes one claimed batch. Returns false when the batch failed.
  bool ConsumeBatch(const std::string& ingest_addr, const std::vector<std::string>& ids, const ClusterPeers& peers);
  void Sleep(std::chrono::milliseconds d);
  // The merged records as segment files (more than one only past the format's block limit).
  struct Encoded {
    size_t first = 0;  // index of the image's first record in the merged records
    SegmentImage image;
  };
  // Stores N copies of the images on distinct stores of candidates (then of a fresh view),
  // trying another store for each copy that fails. Unavailable with every failure when fewer
  // than N were stored (the copies made stay: duplicates, which queries and compaction remove).
  Status Replicate(const std::vector<Encoded>& images, const std::vector<std::string_view>& merged,
                   std::vector<ClusterPeers::Store> candidates);
  Result<std::vector<Encoded>> Encode(const std::vector<std::string_view>& records, uint64_t bytes) const;

  rpc::RpcBridge* bridge_ = nullptr;
  std::function<ClusterPeers()> peers_;
  StoreLog* store_ = nullptr;
  ClusterConsumerOptions options_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> threads_;
  std::atomic<int64_t> last_wait_log_ms_{0};
  Counter *consumed_segments_ = nullptr, *consumed_bytes_ = nullptr, *duplicates_ = nullptr, *invalid_ = nullptr;
  Counter *failures_ = nullptr, *replicas_ = nullptr, *records_ = nullptr, *invalid_replies_ = nullptr;
  Counter* copy_failures_ = nullptr;
  Gauge* waiting_ = nullptr;
};

}  // namespace oklog
