#include "query/record_sink.h"

#include <gtest/gtest.h>

#include "common/json.h"

namespace oklog {
namespace {

std::string Escaped(std::string_view s) {
  std::string out;
  AppendJsonEscaped(s, &out);
  return out;
}

TEST(JsonEscape, QuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(Escaped("plain text"), "plain text");
  EXPECT_EQ(Escaped("a\"b\\c"), "a\\\"b\\\\c");
  EXPECT_EQ(Escaped("\n\r\t"), "\\n\\r\\t");
  EXPECT_EQ(Escaped(std::string_view("\x00\x1f\x7f", 3)), "\\u0000\\u001f\x7f");
}

TEST(JsonEscape, ValidUtf8PassesAndInvalidBytesBecomeReplacementCharacters) {
  EXPECT_EQ(Escaped("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"), "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
  const std::string kFffd = "\xEF\xBF\xBD";
  EXPECT_EQ(Escaped("\xFF"), kFffd);
  EXPECT_EQ(Escaped("a\xC3"), "a" + kFffd);                  // truncated sequence
  EXPECT_EQ(Escaped("\xC0\xAF"), kFffd + kFffd);              // overlong
  EXPECT_EQ(Escaped("\xED\xA0\x80"), kFffd + kFffd + kFffd);  // surrogate
  EXPECT_EQ(Escaped("\xF4\x90\x80\x80"), kFffd + kFffd + kFffd + kFffd);  // above U+10FFFF
  EXPECT_EQ(Escaped("\xE2\x80\xA8|\xE2\x80\xA9"), "\\u2028|\\u2029");
}

TEST(AppendFormatted, TextAndJson) {
  std::string rec = "01HF7YAT0000000000000001AB api GET /x \"q\"\n";
  std::string out;
  AppendFormatted(rec, OutputFormat::kText, &out);
  EXPECT_EQ(out, rec);
  out.clear();
  AppendFormatted(rec, OutputFormat::kJson, &out);
  EXPECT_EQ(out,
            "{\"ulid\":\"01HF7YAT0000000000000001AB\",\"time\":\"2023-11-14T22:13:20.000Z\",\"topic\":\"api\","
            "\"line\":\"GET /x \\\"q\\\"\"}\n");
  out.clear();
  AppendFormatted("01HF7YAT0000000000000001AB api\n", OutputFormat::kJson, &out);
  EXPECT_NE(out.find("\"topic\":\"api\",\"line\":\"\""), std::string::npos) << out;
}

TEST(ChunkingSink, BatchesIntoChunksAndFlushesTheRest) {
  std::vector<std::string> chunks;
  ChunkingSink sink(OutputFormat::kText, 100, std::chrono::hours(1), [&](std::string c) {
    chunks.push_back(std::move(c));
    return true;
  });
  std::string rec(40, 'x');
  rec.back() = '\n';
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(sink.Add(rec));
  EXPECT_EQ(chunks.size(), 2u);  // 3 records = 120 bytes each time
  sink.Idle();                   // not yet: the delay has not passed
  EXPECT_EQ(chunks.size(), 2u);
  ASSERT_TRUE(sink.Flush());
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[2], rec);
  EXPECT_EQ(sink.records(), 7u);
}

TEST(ChunkingSink, IdleEmitsAPartialChunkAfterTheDelay) {
  std::vector<std::string> chunks;
  ChunkingSink sink(OutputFormat::kText, 1 << 20, std::chrono::milliseconds(0), [&](std::string c) {
    chunks.push_back(std::move(c));
    return true;
  });
  ASSERT_TRUE(sink.Add("r\n"));
  sink.Idle();
  EXPECT_EQ(chunks, std::vector<std::string>{"r\n"});
}

TEST(ChunkingSink, AGoneConsumerRefusesMore) {
  ChunkingSink sink(OutputFormat::kText, 1, std::chrono::hours(1), [](std::string) { return false; });
  EXPECT_FALSE(sink.Add("r\n"));
  EXPECT_FALSE(sink.Add("r\n"));
  EXPECT_FALSE(sink.Flush());
}

}  // namespace
}  // namespace oklog
