// GPT2_CUDA_VARIANTS: names, "all", "none", and the one-line error for an unknown name.
#include <gtest/gtest.h>

#include <sstream>

#include "base/error.h"
#include "cuda/cuda_variants.h"

namespace gpt2 {
namespace {

int enabled(const CudaVariants& v) {
  int n = 0;
  for (const CudaVariantInfo& info : cuda_variant_table()) n += v.*info.flag;
  return n;
}

TEST(CudaVariants, UnsetEmptyAndNoneAreTodaysPath) {
  EXPECT_EQ(enabled(parse_cuda_variants(nullptr)), 0);
  EXPECT_EQ(enabled(parse_cuda_variants("")), 0);
  EXPECT_EQ(enabled(parse_cuda_variants("none")), 0);
  EXPECT_EQ(cuda_variants_name(parse_cuda_variants("none")), "none");
}

TEST(CudaVariants, EachNameSetsItsOwnSwitchOnly) {
  for (const CudaVariantInfo& info : cuda_variant_table()) {
    const CudaVariants v = parse_cuda_variants(info.name);
    EXPECT_TRUE(v.*info.flag) << info.name;
    EXPECT_EQ(enabled(v), 1) << info.name;
    EXPECT_EQ(cuda_variants_name(v), info.name);
  }
}

TEST(CudaVariants, ListsAndAll) {
  const CudaVariants two = parse_cuda_variants("pdl,attn1");
  EXPECT_TRUE(two.pdl);
  EXPECT_TRUE(two.attention_one_round);
  EXPECT_EQ(enabled(two), 2);
  EXPECT_EQ(cuda_variants_name(two), "attn1,pdl");  // table order, whatever the list's
  EXPECT_EQ(enabled(parse_cuda_variants("all")), int(cuda_variant_table().size()));
}

TEST(CudaVariants, AnUnknownNameIsRefusedWithTheKnownOnes) {
  try {
    parse_cuda_variants("pdl,fast");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("'fast'"), std::string::npos) << what;
    EXPECT_NE(what.find("attn1"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

// --version's list (tools/gpu_check.sh measures the variants it names): a heading, then one
// line per variant in table order.
TEST(CudaVariants, HelpListsEveryVariantOnItsOwnLine) {
  std::stringstream help(cuda_variants_help());
  std::string line;
  ASSERT_TRUE(std::getline(help, line));
  EXPECT_NE(line.find("GPT2_CUDA_VARIANTS"), std::string::npos) << line;
  for (const CudaVariantInfo& info : cuda_variant_table()) {
    ASSERT_TRUE(std::getline(help, line)) << info.name;
    EXPECT_EQ(line, std::string("  ") + info.name + ": " + info.what + (info.exact ? " [exact]" : ""));
  }
  EXPECT_FALSE(std::getline(help, line)) << line;
}

}  // namespace
}  // namespace gpt2
