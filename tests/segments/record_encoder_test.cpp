#include "segments/record_encoder.h"

#include <gtest/gtest.h>

#include "segments/record_merge.h"

namespace oklog {
namespace {

std::vector<std::string> Payloads(const std::string& out) {
  ParseStats ps;
  std::vector<std::string> v;
  for (auto r : ParseRecords(out, &ps)) v.emplace_back(r.substr(27, r.size() - 28));
  EXPECT_EQ(ps.invalid, 0u);
  return v;
}

TEST(RecordEncoderTest, StampsUlidAndStaticTopic) {
  RecordEncoder e(TopicMode::kStatic, "default", 1 << 20);
  std::string out;
  e.Feed("hello\nworld\n", 12, 1700000000000, &out);
  auto p = Payloads(out);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0], "default hello");
  EXPECT_EQ(p[1], "default world");
  EXPECT_EQ(Ulid::Parse(out.substr(0, 26))->unix_ms(), 1700000000000u);
}

TEST(RecordEncoderTest, KeepsEveryByteExceptLf) {
  RecordEncoder e(TopicMode::kStatic, "t", 1 << 20);
  std::string line("a%s%n\0\xff\xfe\r b", 11);
  std::string in = line + "\n";
  std::string out;
  e.Feed(in.data(), in.size(), 1, &out);
  auto p = Payloads(out);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0], "t " + line);
}

TEST(RecordEncoderTest, LinesSplitAcrossFeedsAreJoined) {
  RecordEncoder e(TopicMode::kStatic, "t", 1 << 20);
  std::string out;
  for (char c : std::string("abc\ndef\ng")) e.Feed(&c, 1, 1, &out);
  EXPECT_EQ(Payloads(out), (std::vector<std::string>{"t abc", "t def"}));
  EXPECT_EQ(e.partial_bytes(), 1u);
  EXPECT_TRUE(e.Finish(1, &out));
  EXPECT_EQ(Payloads(out).back(), "t g");
}

TEST(RecordEncoderTest, OverlongLineIsCutAndCountedNeverStalls) {
  RecordEncoder e(TopicMode::kStatic, "t", 10);
  std::string in = std::string(25, 'x') + "\nshort\n" + std::string(10, 'y') + "\n";
  std::string out;
  // Feed in odd pieces so the cut happens inside the partial buffer too.
  for (size_t i = 0; i < in.size(); i += 7) e.Feed(in.data() + i, std::min<size_t>(7, in.size() - i), 1, &out);
  EXPECT_EQ(Payloads(out), (std::vector<std::string>{"t " + std::string(10, 'x'), "t short", "t " + std::string(10, 'y')}));
  EXPECT_EQ(e.stats().truncated, 1u);
  EXPECT_EQ(e.stats().dropped_bytes, 15u);
}

TEST(RecordEncoderTest, DynamicTopicFromFirstToken) {
  RecordEncoder e(TopicMode::kDynamic, "default", 1 << 20);
  std::string in = "web GET /\n-bad x\nnospace\n";
  std::string out;
  e.Feed(in.data(), in.size(), 1, &out);
  EXPECT_EQ(Payloads(out), (std::vector<std::string>{"web GET /", "default -bad x", "default nospace"}));
  EXPECT_EQ(e.stats().invalid_topics, 2u);
}

TEST(RecordEncoderTest, UlidsStrictlyIncrease) {
  RecordEncoder e(TopicMode::kStatic, "t", 1 << 20);
  std::string out;
  for (int i = 0; i < 1000; ++i) e.Feed("x\n", 2, static_cast<uint64_t>(1000 - i), &out);  // clock going back
  ParseStats ps;
  auto recs = ParseRecords(out, &ps);
  ASSERT_EQ(recs.size(), 1000u);
  for (size_t i = 1; i < recs.size(); ++i) EXPECT_LT(recs[i - 1].substr(0, 26), recs[i].substr(0, 26));
}

TEST(RecordEncoderTest, EmptyLinesAreRecords) {
  RecordEncoder e(TopicMode::kStatic, "t", 1 << 20);
  std::string out;
  e.Feed("\n\n", 2, 1, &out);
  EXPECT_EQ(Payloads(out), (std::vector<std::string>{"t ", "t "}));
}

TEST(ValidTopicTest, OkLogGrammar) {
  EXPECT_TRUE(ValidTopic("a"));
  EXPECT_TRUE(ValidTopic("web-1_x"));
  EXPECT_FALSE(ValidTopic(""));
  EXPECT_FALSE(ValidTopic("_x"));
  EXPECT_FALSE(ValidTopic("a b"));
  EXPECT_FALSE(ValidTopic(std::string(256, 'a')));
}

}  // namespace
}  // namespace oklog
