// The cluster-port frame codec: frames, hello, envelopes.
#include <gtest/gtest.h>

#include <random>
#include <utility>
#include <vector>

#include "common/memory_budget.h"
#include "rpc/frame_codec.h"
#include "rpc/rpc.h"

namespace oklog::rpc {
namespace {

TEST(FrameCodecTest, FramesSurviveAnySplit) {
  std::string stream = EncodeFrame("hello") + EncodeFrame("") + EncodeFrame(std::string(70000, 'x'));
  for (size_t chunk : {1u, 3u, 4u, 5u, 1000u, 100000u}) {
    FrameDecoder d;
    std::vector<std::string> frames;
    for (size_t i = 0; i < stream.size(); i += chunk) {
      ASSERT_TRUE(d.Feed(stream.data() + i, std::min(chunk, stream.size() - i)));
      std::string f;
      while (true) {
        Result<bool> r = d.Next(&f);
        ASSERT_TRUE(r.ok());
        if (!r.value()) break;
        frames.push_back(f);
      }
    }
    ASSERT_EQ(frames.size(), 3u) << chunk;
    EXPECT_EQ(frames[0], "hello");
    EXPECT_EQ(frames[1], "");
    EXPECT_EQ(frames[2].size(), 70000u);
  }
}

TEST(FrameCodecTest, OversizeLengthIsAStickyError) {
  FrameDecoder d(1024);
  std::string f = EncodeFrame(std::string(2000, 'x'));
  ASSERT_TRUE(d.Feed(f.data(), f.size()));
  std::string out;
  EXPECT_FALSE(d.Next(&out).ok());
  EXPECT_FALSE(d.Next(&out).ok());
}

TEST(FrameCodecTest, HelloAndEnvelopeRoundTripAndRejectJunk) {
  auto h = DecodeHello(EncodeHello({1, "prod", "node-1"}));
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->cluster, "prod");
  EXPECT_EQ(h->node, "node-1");
  Envelope e{Envelope::Kind::kRequest, 7, "gossip", 0, "body"};
  auto d = DecodeEnvelope(EncodeEnvelope(e));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->method, "gossip");
  EXPECT_EQ(d->body, "body");
  std::string enc = EncodeHello({1, "prod", "node-1"});
  for (size_t n = 0; n < enc.size(); ++n) EXPECT_FALSE(DecodeHello(enc.substr(0, n)).ok());
  std::mt19937 rng(1);
  for (int i = 0; i < 5000; ++i) {
    std::string junk(rng() % 64, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    (void)DecodeHello(junk);
    (void)DecodeEnvelope(junk);
  }
  std::string bad_magic = EncodeHello({1, "prod", "n"});
  bad_magic[2] = 'X';
  EXPECT_FALSE(DecodeHello(bad_magic).ok());
}

}  // namespace
}  // namespace oklog::rpc

namespace oklog::rpc {
namespace {

// The wire numbers are pinned: a reordered Code enum must not change what a peer reads.
TEST(WireStatusTest, NumbersArePinnedAndEveryCodeRoundTrips) {
  const std::vector<std::pair<Status, uint32_t>> pinned = {
      {Status::Ok(), 0},
      {Status::InvalidArgument("m"), 1},
      {Status::NotFound("m"), 2},
      {Status::Corruption("m"), 3},
      {Status::IOError("m"), 4},
      {Status::Unavailable("m"), 5},
      {Status::TimedOut("m"), 6},
      {Status::ResourceExhausted("m"), 7},
      {Status::AlreadyExists("m"), 8},
      {Status::Cancelled("m"), 9},
  };
  for (const auto& [s, n] : pinned) {
    EXPECT_EQ(WireStatus(s), n) << s.ToString();
    Status back = StatusFromWire(n, s.message());
    EXPECT_EQ(back.code(), s.code()) << n;
    EXPECT_EQ(back.message(), s.message());
  }
  Status unknown = StatusFromWire(1000, "from a newer peer");
  EXPECT_EQ(unknown.code(), Code::kIOError);
  EXPECT_NE(unknown.message().find("remote status 1000"), std::string::npos) << unknown.ToString();
}

// rpc/frame_codec.h with a budget: partial frames are charged, a Feed past the limit is refused
// (nothing appended), and whole frames taken give their bytes back.
TEST(FrameDecoderTest, WithAMemoryBudgetItChargesWhatItBuffersAndIsRefusedPastTheLimit) {
  MemoryBudget b(48 << 10, nullptr);
  FrameDecoder d;
  d.SetBudget(&b, MemoryBudget::Use::kRpcFrame);
  const std::string frame = EncodeFrame(std::string(40 << 10, 'f'));
  ASSERT_TRUE(d.Feed(frame.data(), frame.size() / 2));
  EXPECT_EQ(b.used(), frame.size() / 2);
  EXPECT_FALSE(d.Feed(frame.data(), frame.size())) << "a feed past the budget was taken";
  EXPECT_EQ(d.buffered(), frame.size() / 2);
  ASSERT_TRUE(d.Feed(frame.data() + frame.size() / 2, frame.size() - frame.size() / 2));
  std::string out;
  ASSERT_TRUE(d.Next(&out).value());
  EXPECT_EQ(out.size(), 40u << 10);
  EXPECT_EQ(b.used(), 0u);
}

}  // namespace
}  // namespace oklog::rpc
