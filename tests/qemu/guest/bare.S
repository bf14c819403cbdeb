/* bare.c's start: a Multiboot (v1) header, so QEMU's -kernel loads it straight into 32-bit
 * protected mode; our own flat GDT (the loader's may be anywhere); a stack; and the interrupt
 * entry points: the 100 Hz timer, spurious interrupts, and CPU exceptions (fatal). */
        .set MB_MAGIC, 0x1BADB002
        .set MB_FLAGS, 0x00000003          /* page-aligned modules, memory info */

        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

        .text
        .globl _start
_start:
        cli
        mov $stack_top, %esp
        lgdt gdt_desc
        ljmp $0x08, $1f
1:      mov $0x10, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %fs
        mov %ax, %gs
        mov %ax, %ss
        push %ebx                          /* the Multiboot information */
        call guest_main
2:      cli
        hlt
        jmp 2b

        .globl isr_timer
isr_timer:
        push %eax
        incl ticks
        mov $0x20, %al
        out %al, $0x20                     /* end of interrupt, master PIC */
        pop %eax
        iret

        .globl isr_spurious
isr_spurious:
        push %eax
        mov $0x20, %al
        out %al, $0xa0
        out %al, $0x20
        pop %eax
        iret

        .globl isr_fatal
isr_fatal:
        cli
        call guest_fatal
3:      hlt
        jmp 3b

        .data
        .align 8
gdt:    .quad 0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF   /* null, flat code, flat data */
gdt_desc:
        .word 23
        .long gdt

        .bss
        .align 16
        .skip 16384
stack_top:

        .section .note.GNU-stack, "", @progbits
