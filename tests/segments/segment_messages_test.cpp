#include "segments/segment_messages.h"

#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "common/ulid.h"

namespace oklog {
namespace {

const std::string kId = Ulid::FromParts(1700000000000, 1, 2).ToString();
const std::string kId2 = Ulid::FromParts(1700000000001, 3, 4).ToString();

// Every message this header defines, encoded once, with its decoder.
struct Sample {
  const char* name;
  std::string bytes;
  std::function<Status(std::string_view)> decode;
};
std::vector<Sample> Samples() {
  return {
      {"next", EncodeSegmentNext(1 << 20), [](std::string_view b) { return DecodeSegmentNext(b).status(); }},
      {"claimed", EncodeClaimedSegments({{kId, 100}, {kId2, 200}}),
       [](std::string_view b) { return DecodeClaimedSegments(b).status(); }},
      {"id", EncodeSegmentId(kId), [](std::string_view b) { return DecodeSegmentId(b).status(); }},
      {"ids", EncodeSegmentIds({kId, kId2}), [](std::string_view b) { return DecodeSegmentIds(b).status(); }},
      {"stored", EncodeStoredRecords(12345), [](std::string_view b) { return DecodeStoredRecords(b).status(); }},
  };
}

TEST(SegmentMessagesTest, EveryMessageRoundTrips) {
  EXPECT_EQ(*DecodeSegmentNext(EncodeSegmentNext(1 << 20)), 1u << 20);
  auto claimed = DecodeClaimedSegments(EncodeClaimedSegments({{kId, 100}, {kId2, 200}}));
  ASSERT_TRUE(claimed.ok()) << claimed.status().ToString();
  ASSERT_EQ(claimed->size(), 2u);
  EXPECT_EQ((*claimed)[0].id, kId);
  EXPECT_EQ((*claimed)[0].bytes, 100u);
  EXPECT_EQ((*claimed)[1].id, kId2);
  EXPECT_EQ((*claimed)[1].bytes, 200u);
  EXPECT_TRUE(DecodeClaimedSegments(EncodeClaimedSegments({}))->empty());
  EXPECT_EQ(*DecodeSegmentId(EncodeSegmentId(kId)), kId);
  EXPECT_EQ(*DecodeSegmentIds(EncodeSegmentIds({kId, kId2})), (std::vector<std::string>{kId, kId2}));
  EXPECT_TRUE(DecodeSegmentIds(EncodeSegmentIds({}))->empty());
  EXPECT_EQ(*DecodeStoredRecords(EncodeStoredRecords(12345)), 12345u);
}

TEST(SegmentMessagesTest, EveryTruncationAndTrailingByteIsCorruption) {
  for (const Sample& s : Samples()) {
    for (size_t n = 0; n < s.bytes.size(); ++n)
      EXPECT_EQ(s.decode(s.bytes.substr(0, n)).code(), Code::kCorruption) << s.name << " at " << n;
    EXPECT_EQ(s.decode(s.bytes + "\x01").code(), Code::kCorruption) << s.name;
  }
}

TEST(SegmentMessagesTest, BadIdsVersionsAndOldTextFormsAreCorruption) {
  EXPECT_EQ(DecodeSegmentId(EncodeSegmentId("../../etc/passwd")).status().code(), Code::kCorruption);
  // Not canonical (lower case): segment names are canonical ULIDs.
  EXPECT_EQ(DecodeSegmentId(EncodeSegmentId(kId.substr(0, 25) + "u")).status().code(), Code::kCorruption);
  EXPECT_EQ(DecodeSegmentIds(EncodeSegmentIds({kId, "x"})).status().code(), Code::kCorruption);
  EXPECT_EQ(DecodeSegmentNext(EncodeSegmentNext(0)).status().code(), Code::kCorruption);
  std::string v2 = EncodeStoredRecords(1);
  v2[1] = 2;  // the version fixint after the array header
  EXPECT_EQ(DecodeStoredRecords(v2).status().code(), Code::kCorruption);
  // The text bodies of before (never sent by this version) are refused, not misread.
  EXPECT_EQ(DecodeSegmentNext("1000000").status().code(), Code::kCorruption);
  EXPECT_EQ(DecodeSegmentIds(kId + "\n").status().code(), Code::kCorruption);
  EXPECT_EQ(DecodeClaimedSegments(kId + " 100\n").status().code(), Code::kCorruption);
  EXPECT_EQ(DecodeStoredRecords("100").status().code(), Code::kCorruption);
}

TEST(SegmentMessagesTest, RandomAndFlippedBytesNeverCrash) {
  std::mt19937 rng(11);
  for (const Sample& s : Samples()) {
    for (int i = 0; i < 5000; ++i) {
      std::string b = s.bytes;
      b[rng() % b.size()] = static_cast<char>(rng());
      (void)s.decode(b);
      std::string noise(rng() % 48, '\0');
      for (char& c : noise) c = static_cast<char>(rng());
      (void)s.decode(noise);
    }
  }
  // A forged header announcing 2^32-1 ids: refused by the unpacker's limits, not allocated.
  std::string forged = "\x92\x01\xdd\xff\xff\xff\xff";
  EXPECT_EQ(DecodeSegmentIds(forged).status().code(), Code::kCorruption);
}

}  // namespace
}  // namespace oklog
