// Internal to the RPC (rpc_server.cpp, rpc_client.cpp): one framed TCP connection of the cluster
// port, either direction. It owns its uv_tcp_t, splits the byte stream into frames, checks the
// hello, and hands envelopes to its owner; writes own their bytes until their callback.
//
// Thread: loop thread only. Lifetime: allocated with new by the owner, which calls Close()
// exactly once; the memory is freed by the close callback (after every write callback ran).
// After Close() no handler method is called.
//
// Sealed (a keyring given): the connection first sends its preamble and reads the peer's, then
// seals every frame it writes and opens every frame it reads (common/crypto/seal.h); frames
// written before the peer's preamble wait here. A frame that is not a preamble first, or does
// not authenticate, breaks the connection with reason "unauthenticated".
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto/seal.h"
#include "common/status.h"
#include "rpc/frame_codec.h"
#include "rpc/rpc.h"

namespace oklog::rpc {

class RpcConn;

// What an RpcConn tells its owner. Calls never happen after RpcConn::Close().
class RpcConnOwner {
 public:
  virtual ~RpcConnOwner() = default;
  // A hello arrived; return a non-OK status (counted as `reason`) to close the connection.
  virtual Status OnHello(RpcConn* c, const Hello& h) = 0;
  virtual void OnEnvelope(RpcConn* c, Envelope e) = 0;
  // The stream failed or ended (peer closed, malformed input, write error). The owner must
  // call Close() (it may have already). `reason` names a drop for metrics, empty for EOF.
  virtual void OnBroken(RpcConn* c, const Status& why, const char* reason) = 0;
};

class RpcConn {
 public:
  // `ring` null: frames travel in the clear (a cluster without a key file).
  RpcConn(uv_loop_t* loop, RpcConnOwner* owner, size_t max_frame_bytes,
          std::shared_ptr<const crypto::Keyring> ring = nullptr, std::string_view cluster = {});
  RpcConn(const RpcConn&) = delete;
  RpcConn& operator=(const RpcConn&) = delete;

  uv_tcp_t* tcp() { return &tcp_; }
  void StartReading();
  // Queues one frame: the length prefix and the payload go out as two buffers (no copy; sealed
  // in place). Returns false once closed.
  bool WriteFrame(std::string payload);
  void Close();
  bool closed() const { return closing_; }
  bool hello_seen() const { return hello_seen_; }
  size_t write_queue_bytes() const { return queued_bytes_; }
  // The bytes of partial frames read from the peer are charged to budget (may be null); a read
  // the budget refuses breaks the connection with reason "memory".
  void SetMemoryBudget(MemoryBudget* budget) { decoder_.SetBudget(budget, MemoryBudget::Use::kRpcFrame); }
  // False when this connection is sealed with a key that `ring` no longer holds.
  bool KeyedWithin(const crypto::Keyring& ring) const { return !seal_ || seal_->KeyedWithin(ring); }

  std::string peer;      // remote address, for logs and the gossip handler
  std::string peer_name; // from the hello
  uint64_t created_ms = 0;
  void* user = nullptr;  // owner's per-connection state

 private:
  struct WriteReq;
  static void OnAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) noexcept;
  static void OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept;
  static void OnWritten(uv_write_t* req, int status) noexcept;
  static void OnClosed(uv_handle_t* h) noexcept;
  void Broken(const Status& why, const char* reason);
  bool WriteRaw(std::string payload);
  // Takes one frame from the peer through the seal; false when the connection broke.
  bool Unseal(std::string* frame, bool* preamble);

  uv_tcp_t tcp_;
  RpcConnOwner* owner_;
  FrameDecoder decoder_;
  std::unique_ptr<char[]> rbuf_;  // reused by every read: OnRead hands the bytes to decoder_
  bool closing_ = false;
  bool hello_seen_ = false;
  bool reading_ = false;
  size_t queued_bytes_ = 0;
  std::unique_ptr<crypto::StreamSeal> seal_;
  std::vector<std::string> unsealed_;  // written before the peer's preamble came
};

}  // namespace oklog::rpc
