namespace oklog {}
