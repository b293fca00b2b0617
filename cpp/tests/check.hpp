// The small harness shared by the plain C++ test programs.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

namespace heteroagg_test {

inline int failures = 0;

// Records a failed expectation, naming it.
inline void check(bool ok, const std::string& what) {
  if (!ok) {
    std::printf("FAIL: %s\n", what.c_str());
    ++failures;
  }
}

// Prints the summary of the suite and returns the process exit status.
inline int finish(const char* suite) {
  if (failures) {
    std::printf("%d %s check(s) failed\n", failures, suite);
    return EXIT_FAILURE;
  }
  std::printf("all %s tests passed\n", suite);
  return EXIT_SUCCESS;
}

}  // namespace heteroagg_test
