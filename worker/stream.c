/* placeholder: not written yet */
typedef int wk__placeholder_t;
