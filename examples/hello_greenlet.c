/* The greenlet seeds' first example in C: prints "hello world" then "42". */
#include <ivy/ivy.h>
#include <stdio.h>
#include <string.h>

static ivy_greenlet *gr1, *gr2;

static void *test1(void *arg)
{
    const char **xy = arg;
    char sum[64];
    snprintf(sum, sizeof sum, "%s%s", xy[0], xy[1]);
    void *z;
    ivy_switch(gr2, sum, &z);
    printf("%d\n", (int)(intptr_t)z);
    return NULL;
}

static void *test2(void *u)
{
    printf("%s\n", (const char *)u);
    ivy_switch(gr1, (void *)42, NULL);
    return NULL;
}

int main(void)
{
    gr1 = ivy_greenlet_new(test1, NULL, 0);
    gr2 = ivy_greenlet_new(test2, NULL, 0);
    const char *args[] = {"hello", " world"};
    ivy_switch(gr1, args, NULL);
    ivy_greenlet_free(gr2); /* suspended in test2: killed with IVY_EXIT, as greenlet's GC does */
    ivy_greenlet_free(gr1);
    return 0;
}
