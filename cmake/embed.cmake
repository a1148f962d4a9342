# Turns a text file into a C header holding it as one string constant.
# cmake -DINPUT=file -DOUTPUT=header -DNAME=SYMBOL -P embed.cmake
file(READ ${INPUT} content)
string(REPLACE "\\" "\\\\" content "${content}")
string(REPLACE "\"" "\\\"" content "${content}")
string(REPLACE "\n" "\\n\"\n\"" content "${content}")
file(WRITE ${OUTPUT} "/* Generated from ${INPUT} by cmake/embed.cmake: do not edit. */\n"
  "static const char ${NAME}[] =\n\"${content}\";\n")
