/* An intrusive circular doubly linked list (as in the Linux kernel): nodes live inside their
 * owners, insert and remove are O(1) and never allocate. A node not on a list points to itself. */
#ifndef FT_BASE_LIST_H
#define FT_BASE_LIST_H

#include <stddef.h>

typedef struct ft_list {
    struct ft_list *prev, *next;
} ft_list;

#define ft_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void ft_list_init(ft_list *l)
{
    l->prev = l->next = l;
}
static inline int ft_list_empty(const ft_list *l)
{
    return l->next == l;
}
static inline void ft_list_push_back(ft_list *head, ft_list *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}
static inline void ft_list_remove(ft_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

#endif
