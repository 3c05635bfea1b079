"""Local encoders (L_e), server models (S_e) and the KB fusion module."""
