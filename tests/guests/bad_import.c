/* bad_import.c: imports a host function that does not exist. */
__attribute__((import_module("samepage"), import_name("no_such_function"))) int missing(void);

int main(void) { return missing(); }
