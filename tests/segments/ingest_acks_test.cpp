// The newline ports' back channel (segments/ingest_acks.h): what the forwarder parses.
#include "segments/ingest_acks.h"

#include <gtest/gtest.h>

#include <vector>

namespace oklog {
namespace {

std::vector<IngestAckParser::Message> ParseAll(IngestAckParser& p) {
  std::vector<IngestAckParser::Message> out;
  while (auto m = p.Next()) out.push_back(*m);
  return out;
}

TEST(IngestAcksTest, HelloAcksAndLeaveParseEvenWhenSplitAcrossReads) {
  const std::string channel = std::string(kDurableHello) + std::string(kFastHello) + EncodeAck(0) + EncodeAck(18446744073709551615ull) +
                              std::string(kLeaveMessage);
  IngestAckParser p;
  std::vector<IngestAckParser::Message> got;
  for (char c : channel) {  // byte by byte
    p.Feed(std::string_view(&c, 1));
    for (auto& m : ParseAll(p)) got.push_back(m);
  }
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[0].kind, IngestAckParser::Message::Kind::kDurableHello);
  EXPECT_EQ(got[1].kind, IngestAckParser::Message::Kind::kFastHello);
  EXPECT_EQ(got[2].kind, IngestAckParser::Message::Kind::kAck);
  EXPECT_EQ(got[2].count, 0u);
  EXPECT_EQ(got[3].count, 18446744073709551615ull);
  EXPECT_EQ(got[4].kind, IngestAckParser::Message::Kind::kLeave);
  EXPECT_EQ(p.skipped(), 0u);
}

TEST(IngestAcksTest, MalformedOrUnknownLinesAreSkippedAndCounted) {
  IngestAckParser p;
  p.Feed("ack \nack 01\nack 1x\nack -1\nack 18446744073709551616\nhello 2\nACK 5\nack 7\n");
  auto got = ParseAll(p);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].count, 7u);
  EXPECT_EQ(p.skipped(), 7u);
  p.Feed(std::string(1000, 'z'));  // no LF: garbage, dropped
  EXPECT_TRUE(ParseAll(p).empty());
  p.Feed("\nack 9\n");
  got = ParseAll(p);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].count, 9u);
}

// Every single-byte corruption of an ack either still parses as some ack or is skipped: the
// parser never crashes or yields a kind that was not there.
TEST(IngestAcksTest, EveryByteCorruptionOfAnAckIsSkippedOrAnAck) {
  const std::string ack = EncodeAck(123456);
  for (size_t i = 0; i < ack.size(); ++i) {
    for (int v = 0; v < 256; ++v) {
      std::string bad = ack;
      bad[i] = static_cast<char>(v);
      IngestAckParser p;
      p.Feed(bad + "\n");
      for (auto& m : ParseAll(p)) EXPECT_EQ(m.kind, IngestAckParser::Message::Kind::kAck);
    }
  }
}

}  // namespace
}  // namespace oklog
