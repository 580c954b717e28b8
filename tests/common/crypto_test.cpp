// The cluster keyring and sealing (common/crypto): what each damaged, foreign, stale, replayed
// or reflected input gets.
#include <gtest/gtest.h>

#include <limits>

#include "common/crypto/keyring.h"
#include "common/crypto/seal.h"

namespace oklog::crypto {
namespace {

std::shared_ptr<const Keyring> Ring(const std::vector<std::string>& keys) {
  std::string text;
  for (const std::string& k : keys) text += k + "\n";
  Result<std::shared_ptr<const Keyring>> r = Keyring::Parse(text);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r.value() : nullptr;
}

std::string NewKey() {
  Result<std::string> k = Keyring::Generate();
  EXPECT_TRUE(k.ok());
  return k.value();
}

TEST(KeyringTest, ParsesKeysInOrderSkippingCommentsBlanksAndRepeats) {
  const std::string a = NewKey(), b = NewKey();
  Result<std::shared_ptr<const Keyring>> r = Keyring::Parse("# primary first\n\n  " + b + "\r\n" + a + "\n" + b + "\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ((*r)->keys().size(), 2u);
  EXPECT_EQ(Keyring::Fingerprint((*r)->primary()), Keyring::Fingerprint(Ring({b})->primary()));
  EXPECT_TRUE((*r)->Contains(Ring({a})->primary()));
  EXPECT_NE(a, b);
}

TEST(KeyringTest, RefusesAKeyThatIsNotBase64Of32BytesNamingTheLine) {
  const std::string good = NewKey();
  for (const std::string& bad : {std::string("short"), good.substr(0, 43), good + "A", good.substr(0, 42) + "==",
                                 std::string(43, '*') + "=", std::string("YWJj")}) {
    Result<std::shared_ptr<const Keyring>> r = Keyring::Parse(good + "\n" + bad + "\n");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find("line 2"), std::string::npos) << r.status().message();
  }
  EXPECT_FALSE(Keyring::Parse("# nothing\n\n").ok());
  EXPECT_EQ(Keyring::LoadFile("/nonexistent/keys").status().code(), Code::kNotFound);
}

TEST(PacketSealerTest, OpensWhatItSealsAndNothingElse) {
  auto ring = Ring({NewKey()});
  PacketSealer a(ring, "c"), b(ring, "c");
  std::string sealed = a.Seal("hello gossip", 1000);
  EXPECT_EQ(sealed.size(), std::string("hello gossip").size() + kPacketOverheadBytes);
  EXPECT_EQ(sealed.find("hello"), std::string::npos);  // not in the clear
  Result<std::string> r = b.Open(sealed, 1000);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, "hello gossip");
  EXPECT_EQ(b.Open(a.Seal("", 1000), 1000).value(), "");
}

TEST(PacketSealerTest, EveryFlippedByteAndEveryTruncationIsRefused) {
  auto ring = Ring({NewKey()});
  PacketSealer a(ring, "c"), b(ring, "c");
  const std::string sealed = a.Seal("a gossip packet with some members in it", 5000);
  for (size_t i = 0; i < sealed.size(); ++i) {
    std::string bad = sealed;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    EXPECT_EQ(b.Open(bad, 5000).status().code(), Code::kCorruption) << "byte " << i;
  }
  for (size_t n = 0; n < sealed.size(); ++n)
    EXPECT_EQ(b.Open(sealed.substr(0, n), 5000).status().code(), Code::kCorruption) << n;
  EXPECT_TRUE(b.Open(sealed, 5000).ok());  // the original still opens: nothing above was remembered
}

TEST(PacketSealerTest, ForeignKeyOrClusterIsRefused) {
  auto ring = Ring({NewKey()});
  PacketSealer a(ring, "c");
  PacketSealer other_key(Ring({NewKey()}), "c"), other_cluster(ring, "d");
  const std::string sealed = a.Seal("x", 0);
  EXPECT_EQ(other_key.Open(sealed, 0).status().code(), Code::kCorruption);
  EXPECT_EQ(other_cluster.Open(sealed, 0).status().code(), Code::kCorruption);
}

TEST(PacketSealerTest, AReplayOrAStalePacketIsRefused) {
  auto ring = Ring({NewKey()});
  PacketSealer a(ring, "c"), b(ring, "c");
  const std::string sealed = a.Seal("ping", 100000);
  EXPECT_TRUE(b.Open(sealed, 100000).ok());
  EXPECT_EQ(b.Open(sealed, 100500).status().code(), Code::kAlreadyExists);
  const int64_t w = kPacketWindow.count();
  EXPECT_EQ(b.Open(a.Seal("late", 100000), 100000 + w + 1).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(b.Open(a.Seal("early", 100000 + w + 1), 100000).status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(b.Open(a.Seal("skewed but within", 100000 + w - 1), 100000).ok());
}

// Found by tests/fuzz/fuzz_seal: a sent time and a clock at opposite ends of int64 overflowed
// the signed skew (undefined behaviour, UBSan), and a sent time near the minimum the replay
// cache's horizon. Such packets are refused as outside the window, or kept, without overflow.
TEST(PacketSealerTest, ClocksAtTheEndsOfInt64AreComparedWithoutOverflow) {
  auto ring = Ring({NewKey()});
  PacketSealer a(ring, "c"), b(ring, "c");
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min(), kMax = std::numeric_limits<int64_t>::max();
  auto r = b.Open(a.Seal("x", kMin), kMax);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("-18446744073709551615 ms"), std::string::npos) << r.status().message();
  EXPECT_EQ(b.Open(a.Seal("y", kMax), kMin).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(b.Open(a.Seal("z", 0), kMin).status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(b.Open(a.Seal("in window at the minimum", kMin + 5), kMin).ok());
}

TEST(PacketSealerTest, DuringARotationEitherPrimaryOpensEverywhere) {
  const std::string old_key = NewKey(), new_key = NewKey();
  PacketSealer old_primary(Ring({old_key, new_key}), "c"), new_primary(Ring({new_key, old_key}), "c");
  PacketSealer only_new(Ring({new_key}), "c");
  EXPECT_TRUE(new_primary.Open(old_primary.Seal("a", 0), 0).ok());
  EXPECT_TRUE(old_primary.Open(new_primary.Seal("b", 0), 0).ok());
  EXPECT_TRUE(only_new.Open(new_primary.Seal("c", 0), 0).ok());
  EXPECT_FALSE(only_new.Open(old_primary.Seal("d", 0), 0).ok());  // the old key was removed
  old_primary.SetKeyring(Ring({new_key}));
  EXPECT_TRUE(only_new.Open(old_primary.Seal("e", 0), 0).ok());
}

// Two ends of one connection that have exchanged preambles.
struct Pair {
  StreamSeal a, b;
  Pair(std::shared_ptr<const Keyring> ra, std::shared_ptr<const Keyring> rb, const char* ca = "c", const char* cb = "c")
      : a(std::move(ra), ca), b(std::move(rb), cb) {}
  void Start() {
    ASSERT_TRUE(a.Start(b.preamble()).ok());
    ASSERT_TRUE(b.Start(a.preamble()).ok());
  }
};

TEST(StreamSealTest, FramesGoBothWaysSealed) {
  auto ring = Ring({NewKey()});
  Pair p(ring, ring);
  p.Start();
  for (int i = 0; i < 3; ++i) {
    std::string f = "request " + std::to_string(i);
    p.a.Seal(&f);
    EXPECT_EQ(f.find("request"), std::string::npos);
    ASSERT_TRUE(p.b.Open(&f).ok());
    EXPECT_EQ(f, "request " + std::to_string(i));
    std::string g = std::string(100000, 'x');
    p.b.Seal(&g);
    ASSERT_TRUE(p.a.Open(&g).ok());
    EXPECT_EQ(g, std::string(100000, 'x'));
  }
}

TEST(StreamSealTest, ADroppedRepeatedReorderedOrFlippedFrameIsRefused) {
  auto ring = Ring({NewKey()});
  for (int kind = 0; kind < 4; ++kind) {
    Pair p(ring, ring);
    p.Start();
    std::string f1 = "one", f2 = "two";
    p.a.Seal(&f1);
    p.a.Seal(&f2);
    std::string first = f1;
    if (kind != 0) {
      ASSERT_TRUE(p.b.Open(&first).ok());  // kind 0: f1 never arrives
    }
    std::string next = kind == 1 ? f1 : f2;  // 1: f1 again
    if (kind == 2) {  // 2: the receiver is keyed, then a frame from another connection's stream
      Pair q(ring, ring);
      q.Start();
      next = "two";
      q.a.Seal(&next);
      std::string skip = "x";
      q.a.Seal(&skip);
      next = skip;
    }
    if (kind == 3) next[1] = static_cast<char>(next[1] ^ 0x20);
    EXPECT_EQ(p.b.Open(&next).code(), Code::kCorruption) << "kind " << kind;
  }
}

TEST(StreamSealTest, ARecordedStreamOpensUnderNoLaterConnection) {
  auto ring = Ring({NewKey()});
  Pair first(ring, ring);
  first.Start();
  std::string recorded = "segment.commit";
  first.a.Seal(&recorded);
  // The attacker replays a's preamble and its first frame to the server on a new connection:
  // the server's nonce is new, so the frame opens under no key.
  StreamSeal server(ring, "c");
  ASSERT_TRUE(server.Start(first.a.preamble()).ok());
  EXPECT_EQ(server.Open(&recorded).code(), Code::kCorruption);
}

TEST(StreamSealTest, AReflectedPreambleOrGarbageInsteadOfOneIsRefused) {
  auto ring = Ring({NewKey()});
  StreamSeal s(ring, "c");
  EXPECT_EQ(s.Start(s.preamble()).code(), Code::kCorruption);
  StreamSeal t(ring, "c");
  EXPECT_EQ(t.Start("\x94\xa5oklog\x01\xa1" "c\xa1x").code(), Code::kCorruption);  // a plain hello
  std::string wrong_version = t.preamble();
  wrong_version[6] = 2;
  StreamSeal u(ring, "c");
  EXPECT_EQ(u.Start(wrong_version).code(), Code::kCorruption);
  std::string f = "x";
  StreamSeal v(ring, "c");
  EXPECT_EQ(v.Open(&f).code(), Code::kCorruption);  // before any preamble
}

TEST(StreamSealTest, AnotherKeyOrClusterCannotSpeak) {
  Pair keys(Ring({NewKey()}), Ring({NewKey()}));
  keys.Start();
  std::string f = "hello";
  keys.a.Seal(&f);
  EXPECT_EQ(keys.b.Open(&f).code(), Code::kCorruption);
  auto ring = Ring({NewKey()});
  Pair clusters(ring, ring, "c", "d");
  clusters.Start();
  std::string g = "hello";
  clusters.a.Seal(&g);
  EXPECT_EQ(clusters.b.Open(&g).code(), Code::kCorruption);
}

TEST(StreamSealTest, EndsWithDifferentPrimariesTalkAndARemovedKeyIsNoticed) {
  const std::string old_key = NewKey(), new_key = NewKey();
  auto a_ring = Ring({new_key, old_key}), b_ring = Ring({old_key, new_key});
  Pair p(a_ring, b_ring);
  p.Start();
  std::string f = "from a", g = "from b";
  p.a.Seal(&f);
  p.b.Seal(&g);
  ASSERT_TRUE(p.b.Open(&f).ok());
  ASSERT_TRUE(p.a.Open(&g).ok());
  EXPECT_EQ(f, "from a");
  EXPECT_EQ(g, "from b");
  EXPECT_TRUE(p.a.KeyedWithin(*a_ring));
  EXPECT_FALSE(p.a.KeyedWithin(*Ring({new_key})));  // a opens b's frames with the old key
  EXPECT_FALSE(p.b.KeyedWithin(*Ring({new_key})));  // b seals with the old key
  EXPECT_TRUE(p.b.KeyedWithin(*Ring({new_key, old_key})));
}

}  // namespace
}  // namespace oklog::crypto
