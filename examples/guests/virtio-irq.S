/*
 * Interrupts for virtio-guest.c's MODE_IRQ (built with -DVIRTIO_IRQ), with the in-kernel irqchip:
 * the machine's virtio devices are on IOAPIC pins 5.. (virtio device i on pin 5 + i); they are routed
 * edge-triggered to vectors 48 + pin on APIC 0, each with the SDK's CPL 0 stub (count, flag, LAPIC
 * EOI). The driver acknowledges InterruptStatus from CPL 3, which lowers the transport's level line,
 * so the next completion is a new edge. The host starts the machine with
 * `start({ interrupts: { idt: 0xe000n, stack } })` and `createMachine({ irqchip: true })`.
 */
        .include "interrupts.inc"
        .set    VIRTIO_IDT, 0xe000

        .text
        .globl  virtio_irq_setup, kvmpool_irq_any, kvmpool_irq_counts
/* virtio_irq_setup(): the #GP (hlt-wait) gate, gates for vectors 53–60, the LAPIC, pins 5–12 routed. */
virtio_irq_setup:
        mov     $VIRTIO_IDT, %edi
        call    kvmpool_idt_init
        .irp    v, 53, 54, 55, 56, 57, 58, 59, 60
        mov     $VIRTIO_IDT, %edi
        mov     $\v, %esi
        lea     kvmpool_irq_stub_\v(%rip), %rdx
        call    kvmpool_idt_gate
        .endr
        call    kvmpool_lapic_enable
        .irp    p, 5, 6, 7, 8, 9, 10, 11, 12
        mov     $\p, %edi
        mov     $(\p + 48), %esi
        xor     %edx, %edx                  /* edge-triggered, active high, unmasked */
        call    kvmpool_ioapic_route
        .endr
        ret

        KVMPOOL_INTERRUPT_ROUTINES
        .irp    v, 53, 54, 55, 56, 57, 58, 59, 60
        KVMPOOL_IRQ_STUB \v, eoi=lapic
        .endr
