#include "query/query_params.h"

#include <gtest/gtest.h>

#include "query/query_messages.h"

namespace oklog {
namespace {

using Params = std::multimap<std::string, std::string>;

// 2023-11-14T22:13:20Z
constexpr uint64_t kNow = 1700000000000;

QueryParams MustParse(const Params& p) {
  auto r = ParseQueryParams(p, kNow);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r.value() : QueryParams{};
}

std::string ErrorOf(const Params& p) {
  auto r = ParseQueryParams(p, kNow);
  EXPECT_FALSE(r.ok());
  return r.ok() ? "" : r.status().message();
}

TEST(ParseRfc3339, AcceptsUtcOffsetsAndFractions) {
  EXPECT_EQ(ParseRfc3339Ms("2023-11-14T22:13:20Z"), kNow);
  EXPECT_EQ(ParseRfc3339Ms("2023-11-14t22:13:20z"), kNow);
  EXPECT_EQ(ParseRfc3339Ms("2023-11-14T22:13:20.5Z"), kNow + 500);
  EXPECT_EQ(ParseRfc3339Ms("2023-11-14T22:13:20.123456789Z"), kNow + 123);
  EXPECT_EQ(ParseRfc3339Ms("2023-11-15T00:13:20+02:00"), kNow);
  EXPECT_EQ(ParseRfc3339Ms("2023-11-14T17:13:20.042-05:00"), kNow + 42);
  EXPECT_EQ(ParseRfc3339Ms("1970-01-01T00:00:00Z"), 0u);
  EXPECT_EQ(ParseRfc3339Ms("2024-02-29T00:00:00Z"), 1709164800000u);
}

TEST(ParseRfc3339, RejectsMalformedAndImpossibleDates) {
  for (const char* bad : {"", "2023-11-14", "2023-11-14T22:13:20", "2023-11-14 22:13:20Z", "2023-13-01T00:00:00Z",
                          "2023-02-29T00:00:00Z", "2023-11-31T00:00:00Z", "2023-11-14T24:00:00Z",
                          "2023-11-14T22:60:00Z", "2023-11-14T22:13:61Z", "2023-11-14T22:13:20.Z",
                          "2023-11-14T22:13:20+0200", "2023-11-14T22:13:20Zjunk", "1969-12-31T23:59:59Z",
                          "23-11-14T22:13:20Z", "2023-11-14T22:13:20+24:00"}) {
    EXPECT_FALSE(ParseRfc3339Ms(bad).has_value()) << bad;
  }
}

TEST(FormatRfc3339, SecondsAndMillis) {
  EXPECT_EQ(FormatRfc3339(kNow + 999), "2023-11-14T22:13:20Z");
  EXPECT_EQ(FormatRfc3339Millis(kNow + 7), "2023-11-14T22:13:20.007Z");
  EXPECT_EQ(FormatRfc3339(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(FormatRfc3339(1709164800000), "2024-02-29T00:00:00Z");
}

TEST(ParseTimeBound, RfcTimesCoverTheWholeMillisecond) {
  auto from = ParseTimeBound("2023-11-14T22:13:20.5Z", BoundSide::kFrom, kNow);
  auto to = ParseTimeBound("2023-11-14T22:13:20.5Z", BoundSide::kTo, kNow);
  ASSERT_TRUE(from.ok() && to.ok());
  EXPECT_EQ(from.value(), Ulid::MinAt(kNow + 500));
  EXPECT_EQ(to.value(), Ulid::MaxAt(kNow + 500));
}

TEST(ParseTimeBound, UlidIsAnExactBound) {
  Ulid u = Ulid::FromParts(kNow, 0x1234, 0x56789);
  auto r = ParseTimeBound(u.ToString(), BoundSide::kTo, kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), u);
}

TEST(ParseTimeBound, DurationsMeanThatLongAgoWhateverTheSign) {
  EXPECT_EQ(ParseTimeBound("5m", BoundSide::kFrom, kNow).value(), Ulid::MinAt(kNow - 300000));
  EXPECT_EQ(ParseTimeBound("-5m", BoundSide::kFrom, kNow).value(), Ulid::MinAt(kNow - 300000));
  EXPECT_EQ(ParseTimeBound("1h30m", BoundSide::kTo, kNow).value(), Ulid::MaxAt(kNow - 5400000));
  EXPECT_EQ(ParseTimeBound("now", BoundSide::kTo, kNow).value(), Ulid::MaxAt(kNow));
  EXPECT_EQ(ParseTimeBound("0", BoundSide::kTo, kNow).value(), Ulid::MaxAt(kNow));
  // Longer ago than the epoch clamps to the epoch.
  EXPECT_EQ(ParseTimeBound("1000000h", BoundSide::kFrom, kNow).value(), Ulid::MinAt(0));
}

TEST(ParseQueryParams, DefaultsAreLenient) {
  QueryParams p = MustParse({});
  EXPECT_EQ(p.from, Ulid::MinAt(0));
  EXPECT_EQ(p.to, Ulid::MaxAt(kNow));
  EXPECT_EQ(p.q, "");
  EXPECT_EQ(p.mode, MatchMode::kSubstring);
  EXPECT_TRUE(p.topics.empty());
  EXPECT_FALSE(p.limit.has_value());
  EXPECT_EQ(p.format, OutputFormat::kText);
  EXPECT_EQ(p.order(), ScanOrder::kAscending);
}

TEST(ParseQueryParams, EveryParameter) {
  QueryParams p = MustParse({{"from", "1h"},
                             {"to", "2023-11-14T22:13:20Z"},
                             {"q", "needle in"},
                             {"regex", "false"},
                             {"topic", "api"},
                             {"topic", "web"},
                             {"topic", ""},
                             {"limit", "25"},
                             {"format", "json"}});
  EXPECT_EQ(p.from, Ulid::MinAt(kNow - 3600000));
  EXPECT_EQ(p.to, Ulid::MaxAt(kNow));
  EXPECT_EQ(p.q, "needle in");
  EXPECT_EQ(p.mode, MatchMode::kRegex);  // presence of the key, as OK Log
  EXPECT_EQ(p.topics, (std::vector<std::string>{"api", "web"}));
  EXPECT_EQ(p.limit, 25u);
  EXPECT_EQ(p.format, OutputFormat::kJson);
  EXPECT_EQ(p.order(), ScanOrder::kDescending);
}

TEST(ParseQueryParams, EmptyRegexValueStillMeansRegex) {
  EXPECT_EQ(MustParse({{"regex", ""}}).mode, MatchMode::kRegex);
}

TEST(ParseQueryParams, BadBoundsNameTheParameter) {
  EXPECT_EQ(ErrorOf({{"from", "yesterday"}}).rfind("parsing 'from': ", 0), 0u);
  EXPECT_EQ(ErrorOf({{"from", ""}}).rfind("parsing 'from': ", 0), 0u);
  EXPECT_EQ(ErrorOf({{"to", "2023-11-14T22:13:20"}}).rfind("parsing 'to': ", 0), 0u);
  EXPECT_EQ(ErrorOf({{"to", "5x"}}).rfind("parsing 'to': ", 0), 0u);
  EXPECT_EQ(ErrorOf({{"from", "01ARZ3NDEKTSV4RRFFQ69G5FA!"}}).rfind("parsing 'from': ", 0), 0u);
  EXPECT_EQ(ErrorOf({{"from", "81ARZ3NDEKTSV4RRFFQ69G5FAV"}}).rfind("parsing 'from': ", 0), 0u);  // overflows
  EXPECT_NE(ErrorOf({{"from", "yesterday"}}).find("\"yesterday\""), std::string::npos);
}

TEST(ParseQueryParams, BadLimitAndFormat) {
  for (const char* bad : {"", "0", "-1", "ten", "5 ", "1e3", "99999999999999999999999"}) {
    EXPECT_EQ(ErrorOf({{"limit", bad}}).rfind("parsing 'limit': ", 0), 0u) << bad;
  }
  EXPECT_EQ(ErrorOf({{"format", "xml"}}), "parsing 'format': \"xml\" is neither text nor json");
  EXPECT_EQ(MustParse({{"format", "text"}}).format, OutputFormat::kText);
}

// Found by tests/fuzz/fuzz_query_params: a topic over 256 bytes (or q over 64 KiB, or more than
// 1024 topics) was accepted here, and every store then refused the query.run it became (a 206
// with one error per store instead of a 400).
TEST(ParseQueryParams, RefusesWhatTheStoresWouldRefuse) {
  EXPECT_EQ(MustParse({{"topic", std::string(kMaxQueryTopicBytes, 't')}}).topics.size(), 1u);
  EXPECT_EQ(ErrorOf({{"topic", std::string(kMaxQueryTopicBytes + 1, 't')}}), "parsing 'topic': longer than 256 bytes");
  EXPECT_EQ(ErrorOf({{"q", std::string(kMaxQueryTermBytes + 1, 'q')}}), "parsing 'q': longer than 65536 bytes");
  Params many;
  for (size_t i = 0; i <= kMaxQueryTopics; ++i) many.emplace("topic", "t" + std::to_string(i));
  EXPECT_EQ(ErrorOf(many), "parsing 'topic': more than 1024 topics");
}

}  // namespace
}  // namespace oklog
