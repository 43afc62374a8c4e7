"""D_syn (DAIL step 1): expert data, the three prompts and waypoints, and the generate command."""
