# run_example.cmake — runs one of the lecture's example programs for ctest:
#   cmake -DEXE=path [-DARG=arg] -DEXPECT=regex [-DOUTFILE=path] -P run_example.cmake
# Fails unless it exits 0, its stdout (newlines written as '|') matches EXPECT, and
# OUTFILE (when given) exists afterwards.
if(DEFINED OUTFILE)
  file(REMOVE ${OUTFILE})
endif()
execute_process(COMMAND ${EXE} ${ARG} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(REPLACE "\n" "|" flat "${out}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${EXE} exited ${rc}\nstdout: ${out}\nstderr: ${err}")
endif()
if(NOT flat MATCHES "${EXPECT}")
  message(FATAL_ERROR "${EXE}: output\n  ${flat}\ndoes not match\n  ${EXPECT}")
endif()
if(DEFINED OUTFILE AND NOT EXISTS ${OUTFILE})
  message(FATAL_ERROR "${EXE}: ${OUTFILE} was not written")
endif()
