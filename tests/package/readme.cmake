# package.readme: the README's "Using taskyard in your project" snippets are the consumer files the
# other package tests build, copied exactly (each as a whole fenced code block).
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")

file(READ "${SOURCE_DIR}/README.md" readme)
foreach(pair IN ITEMS cpp:main.cpp cmake:find_package/CMakeLists.txt
                      cmake:add_subdirectory/CMakeLists.txt sh:pkg-config/build.sh)
  string(REPLACE ":" ";" pair "${pair}")
  list(GET pair 0 language)
  list(GET pair 1 file)
  file(READ "${CONSUMER_DIR}/${file}" content)
  string(FIND "${readme}" "\n```${language}\n${content}```\n" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "README.md has no ```${language} block identical to tests/consumer/${file}")
  endif()
endforeach()
