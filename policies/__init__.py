"""The CrossGuard policy pack: pure rule functions, evaluated by Pulumi or offline."""
