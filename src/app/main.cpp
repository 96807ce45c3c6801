// gpt2-gen's entry point: parse the command line into CliOptions and run. Every expected
// failure arrives here as a gpt2::Error and leaves as one "error: ..." line and exit code 1.
#include <CLI/CLI.hpp>
#include <iostream>

#include "app/app.h"
#include "app/cli.h"
#include "base/error.h"

int main(int argc, char** argv) {
  CLI::App app;
  gpt2::CliOptions options;
  gpt2::setup_cli(app, options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {  // exit status 1 like every other bad input (not CLI11's codes)
    std::cerr << "error: " << e.what() << " (see gpt2-gen --help)\n";
    return 1;
  }
  try {
    return gpt2::run_app(options);
  } catch (const gpt2::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
  } catch (const std::bad_alloc&) {
    std::cerr << "error: out of memory (host); try a smaller model or --ctx-size\n";
  } catch (const std::exception& e) {
    std::cerr << "error: internal: " << e.what() << "\n";
  }
  return 1;
}
