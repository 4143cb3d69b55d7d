# Runs an example under valgrind memcheck, as the valgrind.<name> tests do (examples/CMakeLists.txt):
#   cmake -DVALGRIND=<valgrind> -DPROGRAM=<example> -DEXPECTED=<regex> -P memcheck.cmake
# The example runs with a 2 s delay instead of the example tests' 20 ms: under valgrind its code
# runs tens of times slower, and what it prints depends on its sleeps outlasting its work.
# Fails if valgrind reports anything (a memory error, or a definitely or indirectly lost block:
# --error-exitcode), if the example fails, or if what it prints (stdout and stderr, with valgrind's
# own lines, if any) does not match EXPECTED: the example test's regular expression.
execute_process(
  COMMAND "${VALGRIND}" --quiet --tool=memcheck --error-exitcode=99 --leak-check=full
    --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect
    --track-origins=yes "${PROGRAM}" 2000
  RESULT_VARIABLE status
  OUTPUT_VARIABLE output
  ERROR_VARIABLE output)
message("${output}")
if(NOT status EQUAL 0)
  message(FATAL_ERROR "memcheck: ${PROGRAM} exited with ${status} under valgrind (99: valgrind reported errors)")
endif()
if(NOT output MATCHES "${EXPECTED}")
  message(FATAL_ERROR "memcheck: ${PROGRAM} printed something else than expected")
endif()
